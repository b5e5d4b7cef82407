"""Patch-level training inside one trainer run: switch, resume, cost report, config errors."""

import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

from configs import tiny
from jaxtok import checkpoint as ckpt_lib
from jaxtok import sharding as shd
from jaxtok.train import trainer
from jaxtok.train.metrics import read_metrics
from jaxtok.train.steps import make_train_step
from jaxtok.train.tasks import get_task

K, STEPS, SWITCH = 4, 12, 6  # 6 patch steps, then 6 token steps


def patch_config(data_dir, **train):
  c = tiny.get_config()
  c.data.update(data_dir=data_dir, seq_len=32, batch_size=8, eval_batches=1)
  c.train.update(steps=STEPS, warmup_steps=2, log_every=1, eval_every=0, ckpt_every=0)
  c.train.update(progress_bar=False, async_ckpt=False, **train)
  c.train.patch_level.update(K=K, fraction=SWITCH / STEPS)
  return c


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """Each trainer run jits its steps anew; a compilation cache shared by this module's
  runs compiles each step once (the compiled code is the same either way)."""
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  old = {k: getattr(jax.config, k) for k in keys}
  compilation_cache.reset_cache()
  jax.config.update(keys[0], str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update(keys[1], 0.0)
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, compile_cache):
  """An uninterrupted run, and one stopped mid-patch, at the switch and mid-token phase."""
  root = tmp_path_factory.mktemp("patch_runs")
  data_dir = str(root / "tfds")
  c = patch_config(data_dir)
  straight = trainer.train(c, str(root / "straight"))
  for stop in (3, SWITCH, 9):
    out = trainer.train(patch_config(data_dir), str(root / "resumed"), stop_after=stop)
    assert out == {"step": stop, "stopped_by": "stop_after"}
  resumed = trainer.train(patch_config(data_dir), str(root / "resumed"))
  return dict(root=root, data_dir=data_dir, straight=straight, resumed=resumed)


def test_both_phases_logged_and_resume_is_exact(runs):
  for prefix, steps in (("patch/", range(1, SWITCH + 1)), ("train/", range(SWITCH + 1, 13))):
    a = read_metrics(str(runs["root"] / "straight"), prefix + "loss")
    b = read_metrics(str(runs["root"] / "resumed"), prefix + "loss")
    assert sorted(a) == list(steps)
    assert [a[s] for s in steps] == [b[s] for s in steps]  # bitwise equal
  assert runs["straight"]["val_bpb"] == runs["resumed"]["val_bpb"]


def test_switch_keeps_weights_resets_optimizer_and_continues_data(runs):
  """Steps 7-9 equal a fresh optimizer run from the step-6 weights on the next batches."""
  c = patch_config(runs["data_dir"])
  task = get_task(c)
  graphdef, params = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param)
  ckpt = ckpt_lib.Checkpointer(str(runs["root"] / "resumed" / "checkpoints"), async_save=False)
  like = {"params": params}
  _, at_switch, js = ckpt.restore(like, json_keys=("data", "phase"), step=SWITCH)
  _, at_9, _ = ckpt.restore(like, step=9)
  ckpt.close()
  assert js["phase"]["name"] == "patch"

  tx, schedule = trainer.optimizer_for(c, STEPS - SWITCH)
  state = trainer.fresh_state(tx, at_switch["params"], shd.make_mesh())
  _, it = trainer.make_batches(task, c, "train", seed=c.train.seed, repeat=True, shuffle=True)
  it.set_state(trainer.process_data_state(js["data"], "checkpoint"))  # this process's position
  step = make_train_step(graphdef, tx, schedule, task.loss_fn)
  losses = []
  for _ in range(3):
    state, m = step(state, next(it))
    losses.append(float(m["loss"]))
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7),
    state.params,
    at_9["params"],
  )
  logged = read_metrics(str(runs["root"] / "straight"), "train/loss")
  np.testing.assert_allclose(losses, [logged[s] for s in (7, 8, 9)], rtol=1e-6)
  # The learning rate warms up again from 0 at the switch.
  assert read_metrics(str(runs["root"] / "straight"), "patch/lr")[SWITCH] > 0
  assert read_metrics(str(runs["root"] / "straight"), "train/lr")[SWITCH + 1] == 0


def test_cost_report(runs):
  r = runs["straight"]
  patch, token = r["phases"]
  assert (patch["name"], patch["steps"], token["name"], token["steps"]) == ("patch", 6, "train", 6)
  assert r["relative_cost"] == pytest.approx(0.5 / K + 0.5)  # λ/K + 1 - λ
  assert patch["train_flops_per_byte"] == pytest.approx(token["train_flops_per_byte"] / K)
  # Same data per step in both phases, so the FLOP ratio is close to the step-cost ratio.
  assert r["relative_train_flops"] == pytest.approx(r["relative_cost"], rel=0.05)
  assert 0 < r["wall_clock_ratio"] < 2 and patch["step_time_s"] > 0
  # Resuming kept the per-phase counters: the resumed run reports the same data volume.
  assert [p["bytes"] for p in runs["resumed"]["phases"]] == [patch["bytes"], token["bytes"]]


def test_resume_with_another_schedule_is_refused(runs, tmp_path):
  workdir = tmp_path / "copy"
  shutil.copytree(runs["root"] / "straight", workdir)
  c = patch_config(runs["data_dir"])
  c.train.patch_level.fraction = 0.0
  with pytest.raises(ckpt_lib.CheckpointError, match="phase 1 .'train'.*patch_level"):
    trainer.train(c, str(workdir))


@pytest.mark.parametrize(
  "field,value,match",
  [
    ("K", 3, "K=3: .*batch_size per process .8. must be divisible by K"),
    ("fraction", 1.0, "fraction=1.0: must be in"),
    ("K", -1, "K=-1: must be an integer"),
  ],
)
def test_config_errors_name_the_field(tmp_path, field, value, match):
  c = patch_config(str(tmp_path / "tfds"))
  c.train.patch_level[field] = value
  with pytest.raises(ValueError, match=f"config.train.patch_level.{match}"):
    trainer.train(c, str(tmp_path / "run"))


@pytest.mark.slow
def test_comparison_writes_json_and_markdown(tmp_path):
  """experiments/patch_level_compare end to end, at toy size (bytes and a BPE, two sizes)."""
  import json

  from configs import patch_level_compare_small
  from jaxtok.eval import patch_level_compare

  c = patch_level_compare_small.get_config()
  c.data.update(data_dir=str(tmp_path / "tfds"), seq_len=32, eval_batches=1)
  c.compare.update(tokenizers=("", "bpe:300"), steps=(6, 12), K=(4,))
  rows = patch_level_compare.run(c, str(tmp_path / "cmp"))
  assert len(rows) == 2 * 2 * 2
  report = json.loads((tmp_path / "cmp" / "patch_level_compare.json").read_text())
  assert report["rows"] == json.loads(json.dumps(rows))
  md = (tmp_path / "cmp" / "patch_level_compare.md").read_text()
  assert md.count("\n| bpe:300 |") == 4 and md.count("\n| bytes |") == 4
  for r in rows:
    tokens = r["steps"] * c.data.batch_size * c.data.seq_len
    assert r["train_tokens"] == tokens and np.isfinite(r["val_bpb"])
    if r["K"] == 0:
      assert r["wall_ratio"] == 1 and r["delta_bpb"] == 0
    else:
      assert r["cost_theory"] == pytest.approx((2 / 3) / 4 + 1 / 3)
      assert r["flops_ratio"] == pytest.approx(r["cost_theory"], rel=0.1)
  # A second call reuses the finished runs.
  again = patch_level_compare.run(c, str(tmp_path / "cmp"))
  assert [r["val_bpb"] for r in again] == [r["val_bpb"] for r in rows]
