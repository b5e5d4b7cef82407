"""Merges the JSON files of bench/device_check.sh into device_check.json and device_check.md.

python bench/device_report.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys


def load(out: str, name: str) -> dict | None:
  path = os.path.join(out, name)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


LABELS = {
  "kernels": "Pallas kernels",
  "mfu": "main model",
  "blt": "BLT training",
  "blt_input": "BLT input path",
  "generation": "BLT generation",
}


def rows(name: str, data: dict | None) -> list[str]:
  if data is None:
    return [f"| {LABELS[name]} | not measured (see the log next to it) |"]
  if name == "kernels":
    out = []
    for r in data["attention"]:
      out.append(
        f"| kernels: {r['case']} T={r['T']} | fwd {r['fwd_ms']:.3g} ms, fwd+bwd "
        f"{r['fwd_bwd_ms']:.3g} ms; XLA/Pallas {r['xla_fwd']:.3g}x / {r['xla_fwd_bwd']:.3g}x |"
      )
    return out
  if name == "mfu":
    return [
      f"| main model ({data['config']}) | {data['bytes_per_s']:.0f} bytes/s, "
      f"{data['model_gflops']:.1f} GFLOP/s, MFU {data['mfu']:.3f} |"
    ]
  if name == "generation":
    return [
      f"| BLT generation, {r['context']} bytes x {r['batch']} rows | {r['cached']:.0f} bytes/s; "
      f"per-byte cost {r['cost_vs_shortest']:.2f}x the shortest context"
      + (f", {r['vs_batch1']:.2f}x batch 1" if "vs_batch1" in r else "")
      + f"; prefill {r['prefill_s'] / (r['blt_fwd_s'] + r['em_fwd_s']):.2f}x (EM + BLT fwd) |"
      for r in data["rows"]
    ]
  rates = data["bytes_per_s"]
  if name == "blt_input":
    return [
      f"| BLT input path (entropy patches on the fly) | {rates['one round trip']:.0f} bytes/s "
      f"with one device round trip per batch, {rates['two round trips']:.0f} with two "
      f"({data['ratio']:.2f}x) |"
    ]
  return [
    f"| BLT training | {rates['BLT']:.0f} bytes/s vs {rates['byte transformer']:.0f} for the "
    f"byte transformer ({data['ratio']:.2f}x) |"
  ]


def main(out: str) -> None:
  parts = {k: load(out, f"{k}.json") for k in LABELS}
  with open(os.path.join(out, "device_check.json"), "w") as f:
    json.dump(parts, f, indent=2)
  lines = ["| measurement | result |", "|---|---|"]
  for k, v in parts.items():
    lines += rows(k, v)
  text = "\n".join(lines) + "\n"
  with open(os.path.join(out, "device_check.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main(sys.argv[1])
