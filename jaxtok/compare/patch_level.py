"""Token-level vs patch-level training at the same number of training tokens.

For every input unit in `config.compare.tokenizers` (a BPE, bytes) and every
token budget in `config.compare.steps` (the data size), trains a token-level
model and one patch-level model per K in `config.compare.K` (the first
`config.compare.fraction` of the steps on patches), each a normal trainer run
in its own sub-workdir. Reports validation loss and bits-per-byte, the
theoretical relative cost λ/K + 1 - λ, the FLOP ratio, and the measured
wall-clock ratio against the token-level run of the same row, as
workdir/patch_level_compare.{json,md}. Finished runs are reused, interrupted
ones resume.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import jax

from jaxtok import paths
from jaxtok.train import trainer
from jaxtok.train.metrics import markdown_table


def validate(config) -> None:
  cc = config.get("compare")
  if cc is None:
    raise ValueError("config.compare: missing; start from configs/patch_level_compare.py")
  if not cc.tokenizers:
    raise ValueError("config.compare.tokenizers: give at least one ('' = bytes, 'bpe:<vocab>')")
  if not cc.steps or min(cc.steps) < 2:
    raise ValueError(f"config.compare.steps={tuple(cc.steps)}: token budgets of >= 2 steps")
  if not cc.K or min(cc.K) < 2:
    raise ValueError(f"config.compare.K={tuple(cc.K)}: patch sizes >= 2")
  if not 0 < cc.fraction < 1:
    raise ValueError(f"config.compare.fraction={cc.fraction}: must be in (0, 1)")


def run_config(config, tokenizer: str, steps: int, k: int):
  """The trainer config of one run (k = 0: token-level)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    del c["compare"]
  c.data.tokenizer = tokenizer
  c.train.steps = steps
  blt = config.model.get("name") == "blt"  # patch-level training of the BLT's latent
  c.train.patch_level.update(
    K=k, fraction=config.compare.fraction if k else 0.0, blt_latent=bool(k) and blt
  )
  return c


def unit_name(config, tokenizer: str) -> str:
  if config.model.get("name") == "blt":
    return f"BLT {config.patching.scheme} patches"
  return tokenizer or "bytes"


def method_name(config, k: int, lam: float) -> str:
  if config.model.get("name") == "blt":
    return f"latent on groups of K={k} patches, λ={lam:.2f}" if k else "plain BLT"
  return f"patch K={k}, λ={lam:.2f}" if k else "token-level"


def run_name(tokenizer: str, steps: int, k: int) -> str:
  unit = tokenizer.replace(":", "") if tokenizer else "bytes"
  return f"{unit}_{steps}steps_{f'patch{k}' if k else 'token'}"


def _train(c, workdir: str) -> dict[str, Any]:
  path = paths.join(workdir, "results.json")
  if paths.exists(path):  # finished earlier: reuse
    return json.loads(paths.read_text(path))
  return trainer.train(c, workdir)


def run(config, workdir: str) -> list[dict[str, Any]]:
  """Runs (or reuses) every model, writes the JSON and Markdown reports, returns the rows."""
  validate(config)
  cc = config.compare
  workdir = paths.check(workdir)
  paths.makedirs(workdir)
  rows = []
  for tok in cc.tokenizers:
    for steps in cc.steps:
      token_wall = token_median = None
      for k in (0, *cc.K):
        c = run_config(config, tok, steps, k)
        name = run_name(tok, steps, k)
        t0 = time.perf_counter()
        r = _train(c, paths.join(workdir, name))
        wall = sum(p["wall_s"] for p in r["phases"])  # steps only: no compilation, no eval
        median = sum(p["step_time_median_s"] * p["steps"] for p in r["phases"])
        if k == 0:
          token_wall, token_median = wall, median
        lam = cc.fraction if k else 0.0
        rows.append(
          {
            "unit": unit_name(config, tok),
            "train_tokens": steps * c.data.batch_size * c.data.seq_len,
            "steps": steps,
            "K": k,
            "method": method_name(config, k, lam),
            "train_flops": sum(p["train_flops"] for p in r["phases"]),
            "val_loss": r["val_loss"],
            "val_bpb": r["val_bpb"],
            # Σ cost_i x steps_i / steps: λ/K + 1 - λ for token LMs (λ after rounding
            # to whole steps); for a BLT only the latent's share shrinks.
            "cost_theory": r.get("relative_cost", 1.0),
            "flops_ratio": r.get("relative_train_flops", 1.0),
            "wall_s": wall,
            "wall_ratio": wall / token_wall,
            "wall_ratio_median": median / token_median,
            # Inside the patch run, against its own token phase (median step times).
            "wall_ratio_in_run": r.get("wall_clock_ratio_median", 1.0),
            "run_s": time.perf_counter() - t0,
            "workdir": name,
          }
        )
        print(markdown_table(rows[-1:]), flush=True)
  for row in rows:  # BPB against the token-level run of the same unit and data size
    base = next(
      b for b in rows if (b["unit"], b["steps"], b["K"]) == (row["unit"], row["steps"], 0)
    )
    row["delta_bpb"] = row["val_bpb"] - base["val_bpb"]
    row["wall_vs_theory"] = row["wall_ratio"] / row["cost_theory"] - 1
    row["median_vs_theory"] = row["wall_ratio_median"] / row["cost_theory"] - 1
  report = {
    "config": json.loads(config.to_json_best_effort()),
    "device": jax.devices()[0].device_kind,
    "rows": rows,
  }
  paths.write_atomic(paths.join(workdir, "patch_level_compare.json"), json.dumps(report, indent=2))
  paths.write_atomic(paths.join(workdir, "patch_level_compare.md"), markdown(rows, config) + "\n")
  return rows


def markdown(rows: list[dict[str, Any]], config) -> str:
  cols = [
    "unit",
    "train_tokens",
    "method",
    "val_loss",
    "val_bpb",
    "delta_bpb",
    "cost_theory",
    "flops_ratio",
    "wall_s",
    "wall_ratio",
    "wall_ratio_median",
    "wall_ratio_in_run",
  ]
  m, d = config.model, config.data
  if m.get("name") == "blt":
    model = f"BLT d_local={m.d_local}, d_global={m.d_global}, n_layers_global={m.n_layers_global}"
  else:
    model = f"d_model={m.d_model}, n_layers={m.n_layers}"
  head = (
    f"Patch-level vs token-level training on `{d.name}`: {model}, "
    f"{d.batch_size} x {d.seq_len} tokens per step. cost_theory = Σ cost_i x steps_i / steps "
    "(λ/K + 1 - λ for token LMs; for a BLT only the latent's FLOPs shrink by K); "
    "flops_ratio from jaxtok.models.flops; wall_s = measured time of "
    "the training steps (no compilation, no evaluation); wall_ratio = wall_s / wall_s of the "
    "token-level run of the same unit and size; wall_ratio_median = the same from the median "
    "time per step of each phase (robust to bursts of load on a shared machine); "
    "wall_ratio_in_run = the patch run against its own token phase (median step times).\n"
  )
  patch = [r for r in rows if r["K"]]
  if patch:
    worst = max(patch, key=lambda r: abs(r["wall_vs_theory"]))
    worst_m = max(patch, key=lambda r: abs(r["median_vs_theory"]))
    head += (
      f"\nLargest deviation from cost_theory: wall_ratio {100 * worst['wall_vs_theory']:+.1f}% "
      f"({worst['workdir']}), wall_ratio_median {100 * worst_m['median_vs_theory']:+.1f}% "
      f"({worst_m['workdir']}).\n"
    )
  return head + "\n" + markdown_table([{k: r[k] for k in cols} for r in rows])
