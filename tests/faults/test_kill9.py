"""kill -9 at random moments, and in the middle of a checkpoint write: the resumed run ends
with the loss log, weights and evaluation of an uninterrupted run."""

import os
import random
import time

import pytest
from faultlib import assert_same_as, finish, kill9, last_step, start, wait_for, writing_checkpoint

slow = pytest.mark.slow


@pytest.mark.fault("kill -9, random moment")
@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=slow) for s in range(1, 7))])
def test_kill9_at_random_moments(env, reference, tmp_path, seed):
  rng = random.Random(seed)
  workdir = str(tmp_path / "run")
  for _ in range(1 if seed == 0 else rng.choice([1, 2])):
    proc = start(env, workdir)
    at = rng.randint(1, 50)
    wait_for(lambda: last_step(workdir) >= at, proc)
    time.sleep(rng.uniform(0, 0.2))
    kill9(proc)
  finish(env, workdir)
  assert_same_as(reference, workdir)


@pytest.mark.fault("kill -9, checkpoint write")
@pytest.mark.parametrize("nth", [3, *(pytest.param(n, marks=slow) for n in (1, 5, 7))])
def test_kill9_while_a_checkpoint_is_written(env, reference, tmp_path, nth):
  workdir = str(tmp_path / "run")
  proc = start(env, workdir)
  at = 7 * nth  # its rows are flushed just before its checkpoint starts
  wait_for(lambda: last_step(workdir) >= at and writing_checkpoint(workdir, at), proc, poll=0.001)
  kill9(proc)
  left = os.listdir(os.path.join(workdir, "checkpoints"))
  assert any(".orbax-checkpoint-tmp" in n for n in left), f"the write had finished: {left}"
  out = finish(env, workdir)
  assert f"resumed from {workdir}/checkpoints at step {at - 7}" in out or at == 7, out[-2000:]
  assert_same_as(reference, workdir)
