"""Caches for batched decoding: left-padded prompts prefilled in one forward, per-row write
columns, rings filled from a prefill; all equal to each row's own full forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.models import transformer as tf
from jaxtok.models.transformer import Transformer, TransformerConfig


class Jitted:
  """The model's entry points under jax.jit (eager NNX calls are slow on a loaded CPU)."""

  def __init__(self, model):
    self.cfg = model.cfg
    self.__call__ = jax.jit(lambda x: model(x))
    self.prefill = jax.jit(model.prefill)
    self.logits = jax.jit(model.logits)
    self.decode = jax.jit(model.decode)
    self.decode_ring = jax.jit(model.decode_ring)
    self.init_cache = model.init_cache
    self.init_ring = model.init_ring

  def __call__(self, x):
    return self.__dict__["__call__"](x)


def make(**kw):
  cfg = TransformerConfig(
    **{**dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=64), **kw}
  )
  return Jitted(Transformer(cfg, rngs=nnx.Rngs(0)))


def rows(lengths, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(4, 260, n).astype(np.int32) for n in lengths]


def left_pad(seqs):
  t = max(len(s) for s in seqs)
  x = np.zeros((len(seqs), t), np.int32)
  for b, s in enumerate(seqs):
    x[b, t - len(s) :] = s
  return jnp.asarray(x), jnp.asarray([t - len(s) for s in seqs], jnp.int32)


@pytest.mark.parametrize("window", [None, 4])
def test_left_padded_prefill_then_decode_equals_each_rows_forward(window):
  model = make(sliding_window=window)
  seqs = rows([9, 5, 7])  # 2 rows padded
  full = [rows_logits for rows_logits in (model(jnp.asarray(s)[None])[0] for s in seqs)]
  prompt = [s[:-4] for s in seqs]  # the last 4 tokens are decoded one at a time
  x, start = left_pad(prompt)
  h, k, v = model.prefill(x, start)
  cache = tf.kv_cache_from_prefill(k, v, start, x.shape[1] + 4)
  got = [model.logits(h[:, -1])]
  for i in range(4):
    nxt = jnp.asarray([s[len(s) - 4 + i] for s in seqs])[:, None]
    logits, cache = model.decode(nxt, cache)
    got.append(logits[:, 0])
  for b, s in enumerate(seqs):
    want = full[b][len(s) - 5 :]
    np.testing.assert_allclose(np.stack([g[b] for g in got]), want, atol=2e-5)


def test_per_row_write_columns_equal_each_rows_forward():
  """end [B]: each row appends at its own column (the BLT latent's patch caches)."""
  model = make()
  seqs = rows([7, 4])
  cache = model.init_cache(2, 8)
  cache = cache.replace(end=jnp.zeros((2,), jnp.int32))
  outs = {0: [], 1: []}
  cols = [0, 0]
  # Row 0 advances every step, row 1 every other step: the rows drift apart.
  for step in range(7):
    move = [True, step % 2 == 0 and cols[1] < 4]
    ids = jnp.asarray([[seqs[b][min(cols[b], len(seqs[b]) - 1)]] for b in range(2)])
    logits, new = model.decode(ids, cache)
    adv = jnp.asarray(move, jnp.int32)
    cache = new.replace(end=cache.end + adv)
    for b in range(2):
      if move[b]:
        outs[b].append(np.asarray(logits[b, 0]))
        cols[b] += 1
  for b in range(2):
    want = np.asarray(model(jnp.asarray(seqs[b][: cols[b]])[None])[0])
    np.testing.assert_allclose(np.stack(outs[b]), want, atol=2e-5)


@pytest.mark.parametrize("t", [3, 6, 11])  # shorter than, equal to, longer than the ring
def test_ring_from_prefill_equals_feeding_the_ring(t):
  model = make(sliding_window=6)
  seqs = rows([t, t - 2])
  x, start = left_pad(seqs)
  _, k, v = model.prefill(x, start)
  ring = tf.ring_from_prefill(k, v, start, 6)
  fed = model.init_ring(2, 6).replace(start=start)
  for c in range(x.shape[1]):
    _, fed = model.decode_ring(x[:, c : c + 1], c, fed)
  np.testing.assert_array_equal(np.asarray(ring.pos), np.asarray(fed.pos))
  np.testing.assert_allclose(np.asarray(ring.k), np.asarray(fed.k), atol=2e-5)
  np.testing.assert_allclose(np.asarray(ring.v), np.asarray(fed.v), atol=2e-5)
  # and decoding on from the prefilled ring equals each row's forward
  nxt = jnp.asarray([[7], [9]], jnp.int32)
  logits, _ = model.decode_ring(nxt, x.shape[1], ring)
  for b, s in enumerate(seqs):
    want = model(jnp.asarray(np.append(s, nxt[b, 0]))[None])[0, -1]
    np.testing.assert_allclose(np.asarray(logits[b, 0]), np.asarray(want), atol=2e-5)


def test_prompt_longer_than_the_cache_names_max_len():
  model = make()
  _, k, v = model.prefill(jnp.ones((1, 5), jnp.int32), jnp.zeros((1,), jnp.int32))
  with pytest.raises(ValueError, match="max_len=4"):
    tf.kv_cache_from_prefill(k, v, jnp.zeros((1,), jnp.int32), 4)
