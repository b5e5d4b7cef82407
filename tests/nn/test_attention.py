import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.nn.attention import Mask, attention, cached_attention, ragged_cached_attention


def naive_attention(q, k, v, qseg, kseg, qidx, kidx, causal, window, scale, seg_window=None):
  """Per-query loop in numpy: the independent reference."""
  b, t, n, h = q.shape
  kv = k.shape[2]
  out = np.zeros_like(q)
  for bi, i, hi in itertools.product(range(b), range(t), range(n)):
    kh = hi // (n // kv)
    keys = [
      j
      for j in range(k.shape[1])
      if qseg[bi, i] != 0
      and kseg[bi, j] != 0
      and (
        qseg[bi, i] == kseg[bi, j]
        if seg_window is None
        else 0 <= qseg[bi, i] - kseg[bi, j] < seg_window
      )
      and (not causal or kidx[bi, j] <= qidx[bi, i])
      and (window is None or qidx[bi, i] - kidx[bi, j] < window)
    ]
    if not keys:
      continue
    s = np.array([q[bi, i, hi] @ k[bi, j, kh] * scale for j in keys])
    p = np.exp(s - s.max())
    p /= p.sum()
    out[bi, i, hi] = sum(pj * v[bi, j, kh] for pj, j in zip(p, keys))
  return out


@pytest.mark.parametrize(
  "causal,window,n,kv", [(True, None, 4, 4), (True, 3, 4, 2), (False, None, 2, 1), (False, 2, 4, 1)]
)
def test_matches_naive_loop(causal, window, n, kv):
  rng = np.random.default_rng(0)
  b, t, s, h = 2, 7, 7, 8
  q = rng.normal(size=(b, t, n, h)).astype(np.float32)
  k = rng.normal(size=(b, s, kv, h)).astype(np.float32)
  v = rng.normal(size=(b, s, kv, h)).astype(np.float32)
  seg = np.array([[1, 1, 1, 2, 2, 0, 0], [1, 2, 2, 2, 3, 3, 3]], np.int32)
  idx = np.broadcast_to(np.arange(t), (b, t)).astype(np.int32)
  mask = Mask(
    q_segment_ids=jnp.asarray(seg), kv_segment_ids=jnp.asarray(seg), causal=causal, window=window
  )
  got = attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask)
  want = naive_attention(q, k, v, seg, seg, idx, idx, causal, window, h**-0.5)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_fully_masked_rows_are_zero_and_grads_finite():
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.normal(size=(1, 4, 2, 4)), jnp.float32)
  kv = jnp.asarray(rng.normal(size=(1, 4, 2, 4)), jnp.float32)
  seg = jnp.array([[0, 1, 1, 0]])  # padding queries and keys
  mask = Mask(q_segment_ids=seg, kv_segment_ids=seg, causal=True)
  out = attention(q, kv, kv, mask)
  assert np.all(np.asarray(out[0, 0]) == 0) and np.all(np.asarray(out[0, 3]) == 0)
  grads = jax.grad(lambda q, k: attention(q, k, k, mask).sum(), argnums=(0, 1))(q, kv)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_cache_style_indices():
  """Queries at absolute positions 5..6 over a 8-slot cache with 7 filled slots."""
  rng = np.random.default_rng(2)
  q = rng.normal(size=(1, 2, 2, 4)).astype(np.float32)
  k = rng.normal(size=(1, 8, 2, 4)).astype(np.float32)
  v = rng.normal(size=(1, 8, 2, 4)).astype(np.float32)
  qidx = np.array([[5, 6]], np.int32)
  kidx = np.arange(8, dtype=np.int32)[None]
  kseg = (kidx < 7).astype(np.int32)
  mask = Mask(
    q_segment_ids=None,
    kv_segment_ids=jnp.asarray(kseg),
    q_idx=jnp.asarray(qidx),
    kv_idx=jnp.asarray(kidx),
    causal=True,
    window=4,
  )
  got = attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask)
  want = naive_attention(q, k, v, np.ones((1, 2), np.int32), kseg, qidx, kidx, True, 4, 0.5)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_bad_impl_and_heads():
  x = jnp.zeros((1, 2, 3, 4))
  with pytest.raises(ValueError, match="multiple"):
    attention(x, jnp.zeros((1, 2, 2, 4)), jnp.zeros((1, 2, 2, 4)), Mask())
  with pytest.raises(ValueError, match="impl"):
    attention(x, x, x, Mask(), impl="cuda")


def test_segment_window_for_patch_cross_attention():
  """4 patch queries over 9 bytes: each sees its own patch and the one before."""
  rng = np.random.default_rng(3)
  q = rng.normal(size=(1, 4, 2, 4)).astype(np.float32)
  k = rng.normal(size=(1, 9, 2, 4)).astype(np.float32)
  qseg = np.array([[1, 2, 3, 0]], np.int32)  # last patch slot is padding
  kseg = np.array([[1, 2, 2, 2, 3, 3, 0, 0, 0]], np.int32)
  mask = Mask(
    q_segment_ids=jnp.asarray(qseg),
    kv_segment_ids=jnp.asarray(kseg),
    causal=False,
    segment_window=2,
  )
  got = attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(k), mask)
  idx = np.zeros((1, 9), np.int32)
  want = naive_attention(q, k, k, qseg, kseg, idx[:, :4], idx, False, None, 0.5, seg_window=2)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
  assert np.all(np.asarray(got[0, 3]) == 0)


@pytest.mark.parametrize("t", [1, 2])
def test_ragged_cached_attention_matches_cached_attention(t):
  """Row b sees slots [lo, hi) of layer 1 (chunks of 16 over 40 slots: the last overlaps),
  only the asking rows are compared; an empty range sees only the chunk itself."""
  b, n, kv, s, h, layers = 4, 4, 2, 40, 8, 2
  ks = jax.random.split(jax.random.PRNGKey(0), 5)
  q = jax.random.normal(ks[0], (b, t, n, h))
  k_cache = jax.random.normal(ks[1], (layers, b, kv, s, h))
  v_cache = jax.random.normal(ks[2], (layers, b, kv, h, s))
  k_new, v_new = jax.random.normal(ks[3], (b, t, kv, h)), jax.random.normal(ks[4], (b, t, kv, h))
  lo, hi = jnp.asarray([0, 5, 3, 0]), jnp.asarray([37, 21, 3, 40 - t])
  rows = jnp.asarray([True, False, True, True])
  cols = hi[:, None] + jnp.arange(t)
  slots = jnp.broadcast_to(jnp.arange(s), (b, s))
  seen = ((slots >= lo[:, None]) & (slots < hi[:, None])).astype(jnp.int32)
  cache_mask = Mask(kv_segment_ids=seen, q_idx=cols, kv_idx=slots, causal=True)
  new_mask = Mask(kv_segment_ids=jnp.ones((b, t), jnp.int32), q_idx=cols, kv_idx=cols, causal=True)
  want = cached_attention(q, k_cache[1], v_cache[1], cache_mask, k_new, v_new, new_mask)
  got = ragged_cached_attention(
    q, k_cache, v_cache, 1, lo, hi, rows, k_new, v_new, new_mask, chunk=16
  )
  np.testing.assert_allclose(np.asarray(got)[rows], np.asarray(want)[rows], atol=1e-5)
