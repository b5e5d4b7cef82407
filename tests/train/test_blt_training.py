"""BLT end to end through the trainer: a tiny entropy model, then a tiny BLT that learns."""

import copy
import os
import sysconfig

import numpy as np
import pytest

import jaxtok
from configs import blt_entropy, tiny
from jaxtok.data import corpora
from jaxtok.data.packing import PackedBatches
from jaxtok.models.blt import BLT
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.patching import PatchingConfig
from jaxtok.train import blt_task, prepare, trainer
from jaxtok.train.metrics import read_metrics
from jaxtok.train.tasks import get_task

STDLIB = sysconfig.get_paths()["stdlib"]
CORPUS = f"files:{STDLIB}/json/*.py,{STDLIB}/email/*.py"  # ~300 kB of real text


@pytest.fixture(scope="module")
def entropy_workdir(data_dir, tmp_path_factory):
  """A tiny entropy model, trained for a few seconds."""
  c = tiny.get_config()
  c.data.update(name=CORPUS, data_dir=data_dir, seq_len=64, eval_batches=1, val_fraction=0.1)
  c.train.update(steps=40, eval_every=0, ckpt_every=0, progress_bar=False, lr=1e-2)
  workdir = str(tmp_path_factory.mktemp("entropy_model"))
  trainer.train(c, workdir)
  return workdir


def blt_config(data_dir, entropy_workdir, **patching):
  c = blt_entropy.get_config()
  c.model.update(
    d_local=32,
    d_global=64,
    n_layers_encoder=1,
    n_layers_global=1,
    n_layers_decoder=1,
    n_heads_local=2,
    n_heads_global=2,
    cross_attn_heads=2,
    hash_vocab=512,
    local_window=64,
  )
  c.data.update(name=CORPUS, data_dir=data_dir, seq_len=128, eval_batches=2, val_fraction=0.1)
  # The median next-byte entropy of the tiny entropy model is ~3.1 nats.
  c.patching.update(entropy_model_workdir=entropy_workdir, threshold=3.1, **patching)
  c.train.update(
    steps=80,
    lr=1e-2,
    warmup_steps=10,
    eval_every=0,
    ckpt_every=0,
    log_every=20,
    progress_bar=False,
  )
  return c


def test_tiny_blt_with_entropy_patches_learns(data_dir, entropy_workdir, tmp_path):
  c = blt_config(data_dir, entropy_workdir)
  r = trainer.train(c, str(tmp_path))
  # From a near-uniform guess (ln 260 = 5.56 nats/byte, 8 bits) down to near the unigram
  # (~4.4 bits on this split) in 80 steps.
  losses = read_metrics(str(tmp_path), "train/loss")
  assert losses[1] > 5.0 and losses[80] < losses[1] - 2.0
  assert r["val_bpb"] < 5.0
  assert 1.5 < r["val_bytes_per_patch"] < 16  # entropy patches, not one byte each
  assert r["val_overflow_fraction"] == 0.0
  parts = [r[f"flops_per_byte_{p}"] for p in ("encoder", "global", "decoder")]
  assert all(p > 0 for p in parts)
  assert r["inference_flops_per_byte"] == pytest.approx(sum(parts))
  model, config = jaxtok.restore(str(tmp_path))
  assert isinstance(model, BLT) and config.patching.bytes_per_patch == r["bytes_per_patch"]


def test_precomputed_entropies_feed_the_same_patcher(data_dir, entropy_workdir, tmp_path):
  c = blt_config(data_dir, entropy_workdir, entropies="precomputed")
  missing = copy.deepcopy(c)
  missing.patching.update(bytes_per_patch=4.0, entropy_store=str(tmp_path / "none"))
  with pytest.raises(FileNotFoundError, match="precompute_entropies"):
    get_task(missing).encode_fn(b"abc")
  c = prepare.prepare(c, str(tmp_path / "run"))  # runs the precompute pass
  paths = blt_task.entropy_store_paths(PatchingConfig.from_dict(c.patching))
  assert all(os.path.exists(p) for p in paths)
  task = get_task(c)
  packed = PackedBatches(
    corpora.corpus_for(c.data, "train"), batch_size=4, seq_len=128, seed=0, encode_fn=task.encode_fn
  )
  raw = next(packed)
  batch = task.host_transform(dict(raw))
  assert "next_entropies" not in batch and batch["patch_starts"].shape == (4, 129)
  # Over the first R bytes of a document (R = the entropy model's training length, the
  # precompute window) in a row that starts with its BOS, both saw the same context:
  # the entropies agree up to the float16 storage. Further on the precompute pass keeps
  # R/2..R bytes of context, the row all of its own.
  em = EntropyModel.load(entropy_workdir)
  live = em.next_entropies(raw["inputs"], raw["segment_ids"], raw["positions"])
  rows = raw["inputs"][:, 0] == 1  # BOS
  sel = (raw["segment_ids"] == 1) & (raw["positions"] < em.seq_len) & rows[:, None]
  assert sel.sum() > 10
  np.testing.assert_allclose(raw["next_entropies"][sel], live[sel], rtol=3e-3, atol=3e-3)
