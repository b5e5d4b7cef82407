"""Metric sinks: TensorBoard scalars (tensorboardX, no TensorFlow) and a JSONL log,
plus the final results table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from tensorboardX import SummaryWriter


class MetricWriter:
  """Writes scalars to TensorBoard and appends them to `metrics.jsonl` in the workdir."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.enabled = enabled
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
    if not self.enabled:
      return
    for k, v in scalars.items():
      self._tb.add_scalar(f"{prefix}{k}", float(v), step)
    self._jsonl.write(
      json.dumps({"step": int(step), **{f"{prefix}{k}": float(v) for k, v in scalars.items()}})
      + "\n"
    )

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


def read_metrics(workdir: str, key: str) -> dict[int, float]:
  """{step: value} for `key` from metrics.jsonl; a resumed run's later rows win."""
  out = {}
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      if key in row:
        out[row["step"]] = row[key]
  return out


def format_table(rows: Mapping[str, object], title: str = "results") -> str:
  """A two-column text table of name -> value."""

  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)

  items = [(k, fmt(v)) for k, v in rows.items()]
  w0 = max(len(k) for k, _ in items)
  w1 = max(len(v) for _, v in items)
  line = "+" + "-" * (w0 + 2) + "+" + "-" * (w1 + 2) + "+"
  body = [f"| {k:<{w0}} | {v:>{w1}} |" for k, v in items]
  return "\n".join([title, line, *body, line])


def markdown_table(rows: list[Mapping[str, object]]) -> str:
  """Rows with the same keys -> a Markdown table (used by the comparison experiments)."""
  if not rows:
    return ""
  keys = list(rows[0])

  def fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)

  out = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
  out += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
  return "\n".join(out)
