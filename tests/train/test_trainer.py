"""End-to-end behaviour of the trainer on the tiny config."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxtok
from configs import tiny
from jaxtok import checkpoint as ckpt_lib
from jaxtok.configlib import ConfigError
from jaxtok.data import corpora
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.losses import lm_loss
from jaxtok.tokenizers import bpe
from jaxtok.train import tasks, trainer
from jaxtok.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small_config(data_dir, **train):
  c = tiny.get_config()
  c.data.data_dir = data_dir
  c.data.eval_batches = 2
  c.train.progress_bar = False
  c.train.update(train)
  return c


def test_tiny_model_learns_well_below_unigram(data_dir, tmp_path):
  c = small_config(data_dir, steps=200)
  results = trainer.train(c, str(tmp_path))
  # 8 bits/byte is a uniform guess over bytes; the unigram model of this split is ~4.8.
  assert results["val_bpb"] < results["val_unigram_bpb"] - 0.5
  assert results["val_bpb"] < 4.5
  assert results["bytes_per_s"] > 0 and results["parameters"] > 0
  for sub in ("checkpoints", "tensorboard"):
    assert os.listdir(tmp_path / sub)
  assert (tmp_path / "results.json").exists() and (tmp_path / "config.json").exists()

  model, config = jaxtok.restore(str(tmp_path))
  assert config.model.d_model == c.model.d_model
  x = jnp.arange(4, 36)[None]
  assert np.isfinite(np.asarray(model(x))).all()


def test_resume_reproduces_losses_exactly(data_dir, tmp_path):
  c = small_config(data_dir, steps=30, ckpt_every=10, log_every=5, eval_every=0)
  trainer.train(c, str(tmp_path / "straight"))
  out = trainer.train(c, str(tmp_path / "resumed"), stop_after=13)  # interrupted off-checkpoint
  assert out["stopped_by"] == "stop_after"
  trainer.train(c, str(tmp_path / "resumed"))
  a = read_metrics(str(tmp_path / "straight"), "train/loss")
  b = read_metrics(str(tmp_path / "resumed"), "train/loss")
  assert sorted(a) == list(range(1, 31))
  assert [a[s] for s in sorted(a)] == [b[s] for s in sorted(a)]  # bitwise equal


def _nan_task(config, **kw):
  """The LM loss, but NaN as soon as a batch holds byte 0x00 (id 4)."""
  task = tasks.transformer_task(config, **kw)

  def loss_fn(model, batch):
    sums = lm_loss(model, batch)
    poisoned = jnp.any(batch["inputs"] == 4)
    return {**sums, "loss_sum": jnp.where(poisoned, jnp.nan, sums["loss_sum"])}

  task.loss_fn = loss_fn
  return task


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setitem(tasks.TASKS, "transformer", _nan_task)
  docs = tmp_path / "docs"
  docs.mkdir()
  for i in range(30):
    (docs / f"{i}.txt").write_bytes(b"clean text %d " % i * 5)
  (docs / "poison.txt").write_bytes(b"bad\x00byte " * 5)
  c = small_config(str(tmp_path / "tfds"), steps=200, ckpt_every=1, log_every=50, eval_every=0)
  c.data.update(name=f"files:{docs}", seq_len=32, batch_size=2, val_fraction=0.2)
  with pytest.raises(trainer.TrainingDivergedError, match="non-finite loss .* at step (\\d+)") as e:
    trainer.train(c, str(tmp_path / "run"))
  bad_step = int(e.value.args[0].split("at step ")[1].split(";")[0])
  saved = ckpt_lib.Checkpointer(str(tmp_path / "run" / "checkpoints"), async_save=False)
  assert saved.latest_step() == bad_step - 1
  saved.close()


def test_diverging_weights_are_never_saved(data_dir, tmp_path):
  """lr=1e6: the update of some step makes the weights non-finite while its loss was still
  finite; that state must not become "the last good checkpoint"."""
  c = small_config(data_dir, steps=200, lr=1e6, ckpt_every=1, log_every=1, eval_every=0)
  c.data.update(seq_len=64, batch_size=4)
  with pytest.raises(trainer.TrainingDivergedError) as e:
    trainer.train(c, str(tmp_path))
  kept = int(re.search(r"last good checkpoint \(step (\d+)\)", str(e.value)).group(1))
  saved = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), async_save=False)
  assert saved.latest_step() == kept
  saved.close()
  model, _ = jaxtok.restore(str(tmp_path))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(nnx.state(model)))


def test_checkpoint_of_another_model_is_refused(data_dir, tmp_path):
  c = small_config(data_dir, steps=2, eval_every=0)
  trainer.train(c, str(tmp_path))
  c.model.d_model = 32
  with pytest.raises(ConfigError, match="config.model.d_model=32, the workdir's is 64"):
    trainer.train(c, str(tmp_path))  # refused by the workdir's config.json, nothing written
  # Below that, the checkpoint itself tells another model from a damaged checkpoint.
  other = nnx.eval_shape(lambda: workdir_lib.build_model(c, nnx.Rngs(0)))
  ckpt = workdir_lib.checkpointer(str(tmp_path), read_only=True)
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="another model"):
    ckpt.restore({"params": nnx.state(other, nnx.Param)})
  ckpt.close()


def test_corrupt_checkpoint_gives_clear_error(data_dir, tmp_path):
  c = small_config(data_dir, steps=2, eval_every=0)
  trainer.train(c, str(tmp_path))
  step_dir = tmp_path / "checkpoints" / "2" / "params"
  for root, _, files in os.walk(step_dir):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  with pytest.raises(ckpt_lib.CheckpointError, match="step 2"):
    jaxtok.restore(str(tmp_path))


def test_config_errors_name_the_field(data_dir, tmp_path):
  c = small_config(data_dir)
  c.data.batch_size = 6
  c.train.grad_accum = 4
  with pytest.raises(ValueError, match="config.data.batch_size"):
    trainer.train(c, str(tmp_path))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(data_dir, tmp_path):
  workdir = tmp_path / "run"
  cmd = [
    sys.executable,
    "-m",
    "experiments.train",
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    f"--config.data.data_dir={data_dir}",
    "--config.train.steps=100000",
    "--config.train.log_every=5",
    "--config.train.progress_bar=False",
  ]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 200):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == 0, out.decode()[-2000:]
  assert b"SIGTERM" in out
  steps = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
  assert steps and max(steps) >= 5
  shutil.rmtree(workdir)


def test_token_level_bpe_model_reports_bits_per_byte(data_dir, tmp_path):
  c = small_config(data_dir, steps=60, eval_every=0)
  c.data.tokenizer = "bpe:512"
  results = trainer.train(c, str(tmp_path))
  assert results["bytes_per_token"] > 1.5  # BPE merges bytes
  assert results["val_bpb"] < 8
  # BPB counts bytes, not tokens: bytes/s exceeds tokens/s by the compression.
  assert results["bytes_per_s"] > results["tokens_per_s"]
  model, config = jaxtok.restore(str(tmp_path))
  assert config.model.vocab_size == 512 and config.data.tokenizer == "bpe:512"
  assert config.data.tokenizer_file == str(tmp_path / "tokenizer.json")


def test_restore_reads_only_the_workdir(data_dir, tmp_path, monkeypatch):
  """Restoring a BPE model opens no corpus and trains no tokenizer: the workdir is enough."""
  c = small_config(data_dir, steps=2, eval_every=0)
  c.data.tokenizer = "bpe:300"
  trainer.train(c, str(tmp_path))
  opened = []
  real_load = corpora.load_corpus
  monkeypatch.setattr(
    corpora, "load_corpus", lambda *a, **kw: opened.append(a) or real_load(*a, **kw)
  )
  monkeypatch.setattr(bpe, "train_bpe", lambda *a, **kw: opened.append("train_bpe"))
  model, config = jaxtok.restore(str(tmp_path))
  assert model.cfg.vocab_size == config.model.vocab_size == 300
  assert opened == []
  # The same spy sees what building the training task does not need either.
  tasks.get_task(config)
  assert opened == []
  trainer.train(c, str(tmp_path / "again"))  # a positive control: training does open it
  assert opened
