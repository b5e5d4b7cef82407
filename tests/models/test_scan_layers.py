"""Scanned layer stacks (lax.scan) and their unrolled twins (a Python loop over the same
stacked parameters) compute the same model: logits, gradients, KV-cache decoding."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from jaxtok.data import codec
from jaxtok.generation import BLTGenerator
from jaxtok.models.blt import BLT, BLTConfig, blt_loss
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import PatchingConfig
from jaxtok.train.blt_task import BLTBatches


def twins(cls, cfg):
  """(scanned, unrolled) models with one set of parameters."""
  scanned = cls(dataclasses.replace(cfg, scan_layers=True), rngs=nnx.Rngs(0))
  unrolled = cls(dataclasses.replace(cfg, scan_layers=False), rngs=nnx.Rngs(1))
  nnx.update(unrolled, nnx.state(scanned, nnx.Param))
  return scanned, unrolled


def assert_trees_close(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):  # up to float32 rounding
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6 * max(np.abs(y).max(), 1.0))


def logits_and_grads(model, logits_fn, loss_fn, batch):
  """(logits, d loss / d params), jitted: eager unrolled models run slowly."""
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(p):
    m = nnx.merge(graphdef, p)
    return loss_fn(m, batch), logits_fn(m, batch)

  (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return logits, grads


def tokens(shape, seed=0):
  return np.random.default_rng(seed).integers(4, 260, shape).astype(np.int32)


@pytest.mark.parametrize("remat", ["none", "dots"])
def test_transformer_scanned_equals_unrolled(remat):
  cfg = TransformerConfig(
    d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, mlp_dim=64, sliding_window=6, remat=remat
  )
  scanned, unrolled = twins(Transformer, cfg)
  assert scanned.blocks.attn.wq.kernel.shape == (3, 32, 32)  # [layers, in, out]
  seg = np.asarray([[1] * 12 + [2] * 8, [1] * 20], np.int32)
  batch = dict(inputs=tokens((2, 20)), segment_ids=seg)
  logits = lambda m, b: m(b["inputs"], segment_ids=b["segment_ids"])  # noqa: E731
  loss = lambda m, b: jax.nn.log_softmax(logits(m, b))[..., 7].sum()  # noqa: E731
  (y_scan, g_scan), (y_loop, g_loop) = (
    logits_and_grads(m, logits, loss, batch) for m in (scanned, unrolled)
  )
  np.testing.assert_allclose(y_scan, y_loop, atol=1e-5)
  assert_trees_close(g_scan, g_loop)


def test_transformer_kv_cache_decoding_scanned_equals_unrolled():
  cfg = TransformerConfig(d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, mlp_dim=64)
  x = tokens((2, 10))
  outs = []
  for model in twins(Transformer, cfg):
    cache = model.init_cache(2, 12)
    logits, cache = model.decode(x[:, :6], cache)
    steps = [logits]
    for i in range(6, 10):
      logits, cache = model.decode(x[:, i : i + 1], cache)
      steps.append(logits)
    outs.append((np.concatenate(steps, 1), cache))
  (a, cache_a), (b, cache_b) = outs
  np.testing.assert_allclose(a, b, atol=1e-5)
  assert cache_a.k.shape == (3, 2, 2, 12, 8)  # one cache per layer, scanned with the layers
  np.testing.assert_allclose(cache_a.k, cache_b.k, atol=1e-6)


BLT_SMALL = dict(
  d_local=32,
  d_global=48,
  n_layers_encoder=2,
  n_layers_global=2,
  n_layers_decoder=3,
  n_heads_local=2,
  n_heads_global=4,
  cross_attn_heads=2,
  hash_vocab=97,
  hash_ngram_sizes=(2, 3),
  local_window=8,
)


def blt_batch(cfg, pcfg):
  a, b = codec.encode(b"one document here"), codec.encode(b"and another, longer document")
  t = 56
  row = np.concatenate([a, b, np.full(t - len(a) - len(b), -1)])
  seg = np.asarray([1] * len(a) + [2] * len(b) + [0] * (t - len(a) - len(b)), np.int32)
  pos = np.concatenate([np.arange(len(a)), np.arange(len(b)), np.zeros(t - len(a) - len(b))])
  targets = np.where(seg[1:] == seg[:-1], row[1:], -1)
  rows = dict(
    inputs=np.stack([row, row[::-1]]).astype(np.int32),
    targets=np.stack([np.append(targets, -1)] * 2).astype(np.int32),
    segment_ids=np.stack([seg, seg[::-1]]),
    positions=np.stack([pos, pos[::-1]]).astype(np.int32),
  )
  return BLTBatches(pcfg, cfg)(rows)


@pytest.mark.parametrize(
  "all_layers",
  [False, pytest.param(True, marks=pytest.mark.slow)],
  ids=["cross-once", "cross-every-layer"],
)
def test_blt_scanned_equals_unrolled(all_layers):
  pcfg = PatchingConfig(scheme="static", patch_size=3)
  cfg = BLTConfig(
    **BLT_SMALL,
    cross_attn_all_layers_encoder=all_layers,
    cross_attn_all_layers_decoder=all_layers,
    max_patches=24,
    lookahead=pcfg.lookahead,
  )
  scanned, unrolled = twins(BLT, cfg)
  n_cross = (2, 3) if all_layers else (1, 1)
  assert scanned.encoder.cross.wq.kernel.shape[0] == n_cross[0]
  assert scanned.decoder.cross.wq.kernel.shape[0] == n_cross[1]
  batch = blt_batch(cfg, pcfg)

  def logits(m, b):
    keys = ("patch_starts", "hash_ids", "segment_ids", "positions")
    return m(b["inputs"], **{k: b[k] for k in keys})

  loss = lambda m, b: blt_loss(m, b)["loss_sum"]  # noqa: E731
  (y_scan, g_scan), (y_loop, g_loop) = (
    logits_and_grads(m, logits, loss, batch) for m in (scanned, unrolled)
  )
  np.testing.assert_allclose(y_scan, y_loop, atol=1e-5)
  assert_trees_close(g_scan, g_loop)


def test_blt_cached_steps_scanned_equal_unrolled():
  """The single-step stages (ring caches, latent KV cache) through both twins, byte by byte."""
  pcfg = PatchingConfig(scheme="space", max_patch_length=4)
  cfg = BLTConfig(
    **BLT_SMALL,
    cross_attn_all_layers_encoder=True,
    cross_attn_all_layers_decoder=True,
    max_patches=24,
    lookahead=pcfg.lookahead,
  )
  ids = codec.encode(b"ab cd, efg hi", add_eos=False)[None]
  logits = []
  for model in twins(BLT, cfg):
    _, step_logits = BLTGenerator(model, pcfg).feed(ids, ids.shape[1])  # byte by byte
    logits.append(np.asarray(step_logits))
  np.testing.assert_allclose(logits[0], logits[1], atol=1e-5)


@pytest.mark.parametrize("cls", [TransformerConfig, BLTConfig])
@pytest.mark.parametrize("value", ["sometimes", True])
def test_remat_is_a_named_policy(cls, value):
  with pytest.raises(ValueError, match="config.model.remat=.*one of .*dots_no_batch"):
    cls.from_dict({"remat": value})
