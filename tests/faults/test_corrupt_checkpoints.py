"""A damaged newest checkpoint: told apart from another model's, passed over for the newest one
that verifies, moved aside (never deleted), and the run ends as an uninterrupted one."""

import glob
import os
import random
import shutil

import pytest
from faultlib import assert_same_as, finish

from jaxtok import checkpoint as ckpt_lib
from jaxtok import sharding as shd
from jaxtok.models import workdir as workdir_lib
from jaxtok.train import trainer
from jaxtok.train.tasks import get_task


def _files(step_dir, pattern):
  found = sorted(glob.glob(os.path.join(step_dir, pattern), recursive=True))
  assert found, f"no {pattern} in {step_dir}"
  return found


def truncated(step_dir):
  for f in _files(step_dir, "params/ocdbt.process_0/d/*"):
    os.truncate(f, os.path.getsize(f) // 2)


def deleted(step_dir):
  for f in _files(step_dir, "opt_state/ocdbt.process_0/d/*"):
    os.remove(f)


def garbage(step_dir):
  rng = random.Random(0)
  for f in _files(step_dir, "params/ocdbt.process_0/d/*"):
    with open(f, "wb") as fh:
      fh.write(bytes(rng.randrange(256) for _ in range(os.path.getsize(f))))


def garbage_metadata(step_dir):
  with open(_files(step_dir, "params/_METADATA")[0], "wb") as f:
    f.write(b"garbage")


def garbage_data_position(step_dir):
  for f in _files(step_dir, "data/*"):
    if not f.endswith("commit_success.txt"):
      with open(f, "wb") as fh:
        fh.write(b'{"epoch": 0, "doc_in')


def missing_manifest(step_dir):
  os.remove(_files(step_dir, "params/manifest.ocdbt")[0])


def item_of_another_step(step_dir):
  """A whole, readable `params` of the previous checkpoint: only the checksums can tell."""
  root = os.path.dirname(step_dir)
  steps = sorted(int(s) for s in os.listdir(root) if s.isdigit())
  previous = os.path.join(root, str(steps[-2]))
  shutil.rmtree(os.path.join(step_dir, "params"))
  shutil.copytree(os.path.join(previous, "params"), os.path.join(step_dir, "params"))


DAMAGE = [
  truncated,
  deleted,
  garbage,
  garbage_metadata,
  garbage_data_position,
  missing_manifest,
  item_of_another_step,
]


def newest(workdir):
  root = os.path.join(workdir, "checkpoints")
  steps = sorted(int(s) for s in os.listdir(root) if s.isdigit())
  return steps, os.path.join(root, str(steps[-1]))


def state_like(workdir):
  """Abstract params and optimizer state of the workdir's model (what the trainer restores)."""
  config = workdir_lib.load_config(workdir)
  mesh, rules = shd.from_config(config.mesh)
  task = get_task(config, mesh=mesh, rules=rules)
  _, params, _ = trainer.build_params(task, config, mesh, rules)
  tx, _ = trainer.optimizer_for(config, config.train.steps)
  state = trainer.fresh_state(tx, params, mesh)
  return {"params": state.params, "opt_state": state.opt_state}


@pytest.fixture(scope="module")
def like(stopped):
  return state_like(stopped)


@pytest.mark.fault("corrupt checkpoint, restore")
@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_a_damaged_checkpoint_is_passed_over_and_called_damaged(stopped, like, copy_of, damage):
  workdir = copy_of(stopped)
  steps, step_dir = newest(workdir)
  damage(step_dir)
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  try:
    with pytest.raises(ckpt_lib.CorruptCheckpointError) as e:
      ck.restore(like, json_keys=("data", "phase"), step=steps[-1])
    assert "another model" not in str(e.value)
    restored = ck.restore(like, json_keys=("data", "phase"))
  finally:
    ck.close()
  assert restored.step == steps[-2]
  assert [s for s, _ in ck.skipped] == [steps[-1]]
  assert "damaged" in ck.skipped[0][1] and "another model" not in ck.skipped[0][1]


@pytest.mark.fault("corrupt checkpoint, restore")
def test_when_no_checkpoint_verifies_the_run_stops_and_keeps_them_all(stopped, like, copy_of):
  workdir = copy_of(stopped)
  steps, _ = newest(workdir)
  for s in steps:
    truncated(os.path.join(workdir, "checkpoints", str(s)))
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  with pytest.raises(ckpt_lib.CorruptCheckpointError, match="no checkpoint in .* restores"):
    ck.restore(like, json_keys=("data", "phase"))
  ck.close()
  assert newest(workdir)[0] == steps


DEFAULT = {"item_of_another_step"}  # the others restore-level in the default run


@pytest.mark.fault("corrupt checkpoint, resume")
@pytest.mark.parametrize(
  "damage",
  [d if d.__name__ in DEFAULT else pytest.param(d, marks=pytest.mark.slow) for d in DAMAGE],
  ids=lambda f: f.__name__,
)
def test_resuming_past_a_damaged_checkpoint_gives_the_same_run(
  env, reference, stopped, copy_of, damage
):
  workdir = copy_of(stopped)
  steps, step_dir = newest(workdir)
  damage(step_dir)
  out = finish(env, workdir)
  assert f"skipped checkpoint step {steps[-1]}: " in out and "damaged" in out, out[-3000:]
  assert f"resumed from {workdir}/checkpoints at step {steps[-2]}" in out
  aside = glob.glob(os.path.join(workdir, "checkpoints.damaged", f"{steps[-1]}.*"))
  assert len(aside) == 1 and os.listdir(aside[0])  # moved, not deleted
  assert_same_as(reference, workdir)
