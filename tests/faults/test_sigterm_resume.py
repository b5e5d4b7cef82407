"""SIGTERM: the run saves where it is and exits cleanly; resuming gives the uninterrupted run."""

import random
import re
import signal
import time

import pytest
from faultlib import assert_same_as, finish, last_step, start, wait_for

from jaxtok import checkpoint as ckpt_lib


@pytest.mark.fault("SIGTERM")
@pytest.mark.slow  # the default run has tests/train/test_trainer.py's SIGTERM test
@pytest.mark.parametrize("seed", [0, 1])
def test_sigterm_saves_and_resuming_gives_the_same_run(env, reference, tmp_path, seed):
  rng = random.Random(seed)
  workdir = str(tmp_path / "run")
  proc = start(env, workdir)
  at = rng.randint(5, 45)
  wait_for(lambda: last_step(workdir) >= at, proc)
  time.sleep(rng.uniform(0, 0.2))
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-3000:]
  stopped = int(re.search(r"stopped at step (\d+) \(SIGTERM\)", out).group(1))
  ck = ckpt_lib.Checkpointer(f"{workdir}/checkpoints", read_only=True)
  assert ck.latest_step() == stopped
  ck.close()
  assert last_step(workdir) == stopped  # every row up to the checkpoint is on disk
  finish(env, workdir)
  assert_same_as(reference, workdir)
