"""A run that diverges stops, and the checkpoint it names as the last good one is the newest,
and holds finite weights."""

import os
import re

import jax
import numpy as np
import pytest
from faultlib import run
from flax import nnx

import jaxtok
from jaxtok import checkpoint as ckpt_lib


@pytest.mark.fault("non-finite weights")
@pytest.mark.slow  # tests/train/test_trainer.py checks it in-process in the default run
def test_the_last_good_checkpoint_is_good(env, tmp_path):
  workdir = str(tmp_path / "run")
  rc, out = run(env, workdir, {"train.lr": 1e6, "train.ckpt_every": 1, "train.log_every": 1})
  assert rc == 1 and "Traceback" not in out, out[-3000:]
  kept = int(re.search(r"The last good checkpoint \(step (\d+)\)", out).group(1))
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  assert ck.latest_step() == kept
  ck.close()
  model, _ = jaxtok.restore(workdir)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(nnx.state(model)))
