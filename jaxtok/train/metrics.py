"""Metric sinks: TensorBoard scalars (tensorboardX, no TensorFlow) and a JSONL log,
plus the final results table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from tensorboardX import SummaryWriter

from jaxtok.checkpoint import write_atomic

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Writes scalars to TensorBoard and appends them to `metrics.jsonl` in the workdir.

  A run resumed from checkpoint `resume_step` first drops the rows a killed run
  logged after that step (they are logged again, identically): each step is
  logged once. TensorBoard is told the same with `purge_step`.
  """

  def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, METRICS_FILE)
      purge = None
      if resume_step is not None and os.path.exists(path):
        drop_rows_after(path, resume_step)
        purge = resume_step + 1
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=purge)
      self._jsonl = open(path, "a")

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
    """Hands the rows written so far to the OS: they survive the process being killed."""
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


def drop_rows_after(path: str, step: int) -> None:
  """Rewrites a metrics file (atomically) without its rows past `step` and a torn last line."""
  keep = []
  with open(path, "rb") as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        continue  # the tail of a row being written when the process was killed
      if row["step"] <= step:
        keep.append(line if line.endswith(b"\n") else line + b"\n")
  write_atomic(path, b"".join(keep))


def read_rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def read_metrics(workdir: str, key: str) -> dict[int, float]:
  """{step: value} for `key` from metrics.jsonl (a step logged twice: the later row)."""
  return {row["step"]: row[key] for row in read_rows(workdir) if key in row}


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
