"""The disk fills up during a checkpoint write (simulated with RLIMIT_FSIZE: writes past the
limit fail with EFBIG, as they fail with ENOSPC on a full disk): the run stops with a clear
message, the previous checkpoint stays restorable, and a resume gives the uninterrupted run."""

import os
import sys

import pytest
from faultlib import argv, assert_same_as, finish, run

from jaxtok import checkpoint as ckpt_lib

# The real CLI, with the file-size limit applied from the checkpoint of step FULL_AT on.
FULL_DISK = """
import resource, runpy, signal, sys
from jaxtok import checkpoint
save = checkpoint.Checkpointer.save
def full_from(self, step, *a, **k):
  if step >= {full_at}:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))
  return save(self, step, *a, **k)
checkpoint.Checkpointer.save = full_from
sys.argv = {argv!r}
runpy.run_module("experiments.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.fault("disk full")
def test_a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(env, reference, tmp_path):
  workdir = str(tmp_path / "run")
  cli = argv(env, workdir)[2:]  # from "experiments.train" on
  script = FULL_DISK.format(full_at=21, argv=["experiments/train.py", *cli[1:]])
  rc, out = run(env, workdir, cmd=[sys.executable, "-c", script])
  assert rc == 1, out[-3000:]
  assert "error: writing checkpoint step 21 in " in out and "(disk full or not writable?)" in out
  assert "The last complete checkpoint (step 14) is kept." in out
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  assert ck.all_steps()[-1] == 14
  ck.close()
  finish(env, workdir)  # space again
  assert_same_as(reference, workdir)
