"""What the fault suite does to a run: start the real CLI, wait for a moment, inject a fault,
and compare the outcome with the uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

import jaxtok
from jaxtok.train.metrics import read_rows

# 60 steps, a checkpoint every 7 and a log line every 10: rows between a checkpoint and the
# next log line are exactly what a kill used to lose; an eval at 25 and 50 is in the log too.
RUN = {
  "train.steps": 60,
  "train.ckpt_every": 7,
  "train.log_every": 10,
  "train.eval_every": 25,
  "train.progress_bar": False,
  "data.eval_batches": 2,
}
# Logged values that depend on the wall clock or on where a window of steps began.
TIMING = ("_per_s", "bpb_window")


# --- running the CLI ------------------------------------------------------------------------


def argv(env, workdir, overrides=None, config="tiny"):
  over = {**RUN, "data.data_dir": env["data_dir"], **(overrides or {})}
  cmd = [sys.executable, "-m", "experiments.train", f"--config={config}", f"--workdir={workdir}"]
  return cmd + [f"--config.{k}={v}" for k, v in over.items()]


def start(env, workdir, overrides=None, **kw) -> subprocess.Popen:
  return subprocess.Popen(
    kw.pop("cmd", None) or argv(env, workdir, overrides),
    cwd=env["cwd"],
    env=env["env"],
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def run(env, workdir, overrides=None, *, timeout=600, **kw) -> tuple[int, str]:
  proc = start(env, workdir, overrides, **kw)
  out, _ = proc.communicate(timeout=timeout)
  return proc.returncode, out


def finish(env, workdir, overrides=None) -> str:
  """Runs (or resumes) to the end; the output."""
  rc, out = run(env, workdir, overrides)
  assert rc == 0, out[-4000:]
  assert os.path.exists(os.path.join(workdir, "results.json")), out[-4000:]
  return out


def wait_for(predicate, proc: subprocess.Popen, timeout=300, poll=0.01):
  """Polls until `predicate()`; fails if the process ended first."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      out = proc.stdout.read()
      pytest.fail(f"the run ended (rc {proc.returncode}) before the fault was injected:\n{out}")
    time.sleep(poll)
  pytest.fail("timed out waiting for the moment to inject the fault")


def kill9(proc: subprocess.Popen) -> str:
  proc.send_signal(signal.SIGKILL)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL, out[-3000:]
  return out


def last_step(workdir) -> int:
  """The step of the last metric row on disk (flushed), 0 before the first."""
  try:
    with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
      lines = f.read().split(b"\n")[:-1]  # a torn last line has no newline yet
  except FileNotFoundError:
    return 0
  return json.loads(lines[-1])["step"] if lines else 0


def writing_checkpoint(workdir, step: int) -> bool:
  """Whether orbax is writing step's checkpoint right now (its temporary directory exists).

  The step matters: on a loaded machine the previous checkpoint's write can still be going
  when the rows of the next one are flushed."""
  try:
    return any(
      n.startswith(f"{step}.orbax-checkpoint-tmp")
      for n in os.listdir(os.path.join(workdir, "checkpoints"))
    )
  except FileNotFoundError:
    return False


# --- the uninterrupted run and the comparison -----------------------------------------------


def outcome(workdir) -> dict:
  """What must not depend on interruptions: the loss log, row by row, the final weights
  and the final evaluation."""
  rows = [{k: v for k, v in r.items() if not k.endswith(TIMING)} for r in read_rows(workdir)]
  model, _ = jaxtok.restore(workdir)
  params = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  return {"rows": rows, "params": params, "val_bpb": results["val_bpb"]}


def assert_same_as(reference: dict, workdir: str) -> None:
  got = outcome(workdir)
  steps = [r["step"] for r in got["rows"]]
  assert got["rows"] == reference["rows"], (
    f"loss log differs: {len(got['rows'])} rows (steps {steps[:3]}...{steps[-3:]}) vs "
    f"{len(reference['rows'])}; first difference at row "
    f"{next((i for i, (a, b) in enumerate(zip(got['rows'], reference['rows'])) if a != b), None)}"
  )
  assert len(got["params"]) == len(reference["params"])
  for a, b in zip(got["params"], reference["params"]):
    assert np.array_equal(a, b), "final weights differ"
  assert got["val_bpb"] == reference["val_bpb"]
