"""Metric sinks: TensorBoard scalars (tensorboardX, no TensorFlow) and a JSONL log,
plus the final results table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from tensorboardX import SummaryWriter, record_writer

from jaxtok import paths
from jaxtok.paths import write_atomic

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Writes scalars to TensorBoard and appends them to `metrics.jsonl` in the workdir.

  A run resumed from checkpoint `resume_step` first drops the rows a killed run
  logged after that step (they are logged again, identically): each step is
  logged once. TensorBoard is told the same with `purge_step`.

  A URL workdir (gs://): objects cannot be appended to, so the rows are kept in
  memory and `flush` rewrites metrics.jsonl whole (one atomic object write; the
  trainer flushes at each log line and before each checkpoint). TensorBoard goes
  through tensorboardX's own gs:// writer (it needs google-cloud-storage); where
  that cannot start, the run goes on without TensorBoard and says so once.
  """

  def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    if not enabled:
      return
    self._remote = paths.is_url(workdir)
    path = paths.join(workdir, METRICS_FILE)
    self._path = path
    purge = None
    kept = b""
    if resume_step is not None and paths.exists(path):
      kept = drop_rows_after(path, resume_step)
      purge = resume_step + 1
    elif self._remote and paths.exists(path):
      kept = paths.read_bytes(path)  # appended to, as a local file is
    if self._remote:
      self._rows = [kept.decode()]  # the file's content is rewritten from these on flush
      self._jsonl = None
    else:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(path, "a")
    self._tb_dir = paths.join(workdir, "tensorboard")
    self._tb = _summary_writer(self._tb_dir, purge, self._remote)

  def write(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
    if not self.enabled:
      return
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(f"{prefix}{k}", float(v), step)
    row = json.dumps({"step": int(step), **{f"{prefix}{k}": float(v) for k, v in scalars.items()}})
    if self._remote:
      self._rows.append(row + "\n")
    else:
      self._jsonl.write(row + "\n")

  def flush(self) -> None:
    """Hands the rows written so far to the OS (a URL workdir: to the store): they survive
    the process being killed."""
    if not self.enabled:
      return
    if self._tb is not None:
      self._tb_call(self._tb.flush)
    if self._remote:
      self._rows = ["".join(self._rows)]
      write_atomic(self._path, self._rows[0])
    else:
      self._jsonl.flush()

  def close(self) -> None:
    if not self.enabled:
      return
    if self._tb is not None:
      self._tb_call(self._tb.close)
    if self._remote:
      self.flush()
    else:
      self._jsonl.close()

  def _tb_call(self, fn) -> None:
    """TensorBoard of a URL workdir is best effort: an upload that fails does not stop a run."""
    if not self._remote:
      fn()
      return
    try:
      fn()
    except Exception as e:
      print(f"TensorBoard stopped: writing {self._tb_dir} failed: {type(e).__name__}: {e}")
      self._tb = None


def _summary_writer(logdir: str, purge: int | None, remote: bool):
  if not remote:
    return SummaryWriter(logdir, purge_step=purge)
  skip = f"no TensorBoard for {logdir} (metrics.jsonl is written)"
  if not record_writer.GCS_ENABLED:  # checked first: a failed start leaves a noisy __del__
    print(f"{skip}: tensorboardX writes gs:// with google-cloud-storage, not installed")
    return None
  try:
    return SummaryWriter(logdir, purge_step=purge)
  except Exception as e:  # no credentials, no bucket
    print(f"{skip}: {type(e).__name__}: {e}")
    return None


def drop_rows_after(path: str, step: int) -> bytes:
  """Rewrites a metrics file (atomically) without its rows past `step` and a torn last line;
  the content kept."""
  keep = []
  for line in paths.read_bytes(path).splitlines(keepends=True):
    try:
      row = json.loads(line)
    except ValueError:
      continue  # the tail of a row being written when the process was killed
    if row["step"] <= step:
      keep.append(line if line.endswith(b"\n") else line + b"\n")
  write_atomic(path, b"".join(keep))
  return b"".join(keep)


def read_rows(workdir: str) -> list[dict]:
  return [
    json.loads(line) for line in paths.read_text(paths.join(workdir, METRICS_FILE)).splitlines()
  ]


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
