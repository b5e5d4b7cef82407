"""A whole BLT with impl="pallas" (attention and patch pooling kernels) equals impl="xla"."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.data import codec
from jaxtok.models.blt import BLT, BLTConfig, blt_loss
from jaxtok.patching import PatchingConfig
from jaxtok.train.blt_task import BLTBatches

TINY = dict(
  d_local=32,
  d_global=48,
  n_layers_encoder=1,
  n_layers_global=1,
  n_layers_decoder=1,
  n_heads_local=2,
  n_heads_global=4,
  n_kv_heads_global=2,
  cross_attn_heads=2,
  hash_vocab=97,
  hash_ngram_sizes=(2, 3),
  local_window=24,
)


def space_patched_batch(cfg: BLTConfig, seq_len=96):
  """Two rows of real text in documents (the second row ends in padding), space patches."""
  text = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. " * 3
  docs = [codec.encode(text[:70]), codec.encode(text[70:]), codec.encode(text[5:60])]
  inputs = np.zeros((2, seq_len), np.int32)
  seg = np.zeros((2, seq_len), np.int32)
  pos = np.zeros((2, seq_len), np.int32)
  row0 = np.concatenate([docs[0], docs[1]])[:seq_len]
  inputs[0], seg[0, :70], seg[0, 70:] = row0, 1, 2
  pos[0] = np.concatenate([np.arange(70), np.arange(seq_len - 70)])
  n = len(docs[2])
  inputs[1, :n], seg[1, :n], pos[1, :n] = docs[2], 1, np.arange(n)
  targets = np.where(seg > 0, np.roll(inputs, -1, axis=1), -1)
  targets[:, -1] = -1
  targets[0, 69] = -1  # documents do not predict across their boundary
  batch = dict(inputs=inputs, targets=targets, segment_ids=seg, positions=pos)
  return BLTBatches(PatchingConfig.from_dict(dict(scheme="space")), cfg)(batch)


@pytest.mark.slow  # interpreted kernels: the kernel tests check each one in the default run
def test_blt_forward_backward_pallas_equals_xla():
  cfgs = {
    impl: BLTConfig(**TINY, attention_impl=impl, pool_impl=impl, max_patches=48)
    for impl in ("xla", "pallas")
  }
  batch = {k: jnp.asarray(v) for k, v in space_patched_batch(cfgs["xla"]).items()}
  results = {}
  for impl, cfg in cfgs.items():
    graphdef, params = nnx.split(BLT(cfg, rngs=nnx.Rngs(0)), nnx.Param)

    @jax.jit
    def loss(params, graphdef=graphdef):
      sums = blt_loss(nnx.merge(graphdef, params), batch)
      return sums["loss_sum"] / sums["tokens"], sums

    results[impl] = jax.value_and_grad(loss, has_aux=True)(params)
  ((lx, sx), gx), ((lp, sp), gp) = results["xla"], results["pallas"]
  assert sp["patches"] == sx["patches"]
  assert float(sx["patches"]) > 20 and float(sx["overflow_sum"]) == 0  # real patches
  np.testing.assert_allclose(lp, lx, rtol=1e-5)
  flat_x, flat_p = jax.tree.leaves(gx), jax.tree.leaves(gp)
  assert len(flat_x) == len(flat_p) > 20
  for a, b in zip(flat_p, flat_x):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


@pytest.mark.slow
def test_blt_trains_to_the_same_losses(tmp_path):
  """The trainer, a BLT with space patches on real text: pallas = xla losses, step by step."""
  import sysconfig

  from configs import blt_space
  from jaxtok.train import trainer
  from jaxtok.train.metrics import read_metrics

  stdlib = sysconfig.get_paths()["stdlib"]
  losses = {}
  for impl in ("xla", "pallas"):
    c = blt_space.get_config()
    c.model.update(**{k: v for k, v in TINY.items() if k != "n_kv_heads_global"})
    c.model.update(attention_impl=impl, pool_impl=impl)
    c.data.update(
      name=f"files:{stdlib}/json/*.py",
      data_dir=str(tmp_path / "tfds"),
      seq_len=128,
      batch_size=4,
      eval_batches=1,
      val_fraction=0.1,
    )
    c.train.update(
      steps=30,
      lr=1e-2,
      warmup_steps=5,
      eval_every=0,
      ckpt_every=0,
      log_every=10,
      progress_bar=False,
    )
    trainer.train(c, str(tmp_path / impl))
    losses[impl] = read_metrics(str(tmp_path / impl), "train/loss")
  assert sorted(losses["xla"]) == sorted(losses["pallas"]) and len(losses["xla"]) == 30
  x = np.array([losses["xla"][s] for s in sorted(losses["xla"])])
  p = np.array([losses["pallas"][s] for s in sorted(losses["pallas"])])
  assert x[-1] < x[0] - 1.0  # it learns
  np.testing.assert_allclose(p, x, rtol=2e-4)
