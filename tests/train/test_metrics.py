"""metrics.jsonl after a kill: each step once, a torn last row dropped."""

import json

from jaxtok.train.metrics import MetricWriter, drop_rows_after, read_rows


def rows_for(steps, prefix="train/"):
  return [{"step": s, f"{prefix}loss": 1.0 / s} for s in steps]


def test_resume_drops_rows_after_the_restored_step(tmp_path):
  w = MetricWriter(str(tmp_path))
  for r in rows_for(range(1, 8)):
    w.write(r["step"], {"loss": r["train/loss"]}, prefix="train/")
  w.flush()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 8, "train/lo')  # the row being written when the process was killed
  w = MetricWriter(str(tmp_path), resume_step=5)  # checkpoint 5 restored
  for s in (6, 7):
    w.write(s, {"loss": 1.0 / s}, prefix="train/")
  w.close()
  assert read_rows(str(tmp_path)) == rows_for(range(1, 8))


def test_drop_rows_after_rewrites_atomically(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows_for(range(1, 4))))
  drop_rows_after(str(path), 0)
  assert path.read_text() == "" and [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_a_fresh_run_starts_a_fresh_log(tmp_path):
  """A run killed before its first checkpoint restarts at step 0: its rows go."""
  w = MetricWriter(str(tmp_path))
  w.write(1, {"loss": 2.0}, prefix="train/")
  w.close()
  MetricWriter(str(tmp_path), resume_step=0).close()
  assert read_rows(str(tmp_path)) == []
