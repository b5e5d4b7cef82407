"""Own-patch cross-attention by gathers and segment sums equals `attention` with the
equal-segment-ids mask (the formulation it replaces), values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.nn.attention import Mask, attention
from jaxtok.nn.patch_attention import PatchCross, patch_cross_attention

B, T, P, K, N, H = 3, 40, 12, 2, 2, 8


def layout(seed):
  """Byte -> patch ids of random rows: patches of 1-6 bytes, padding at a row's end,
  bytes beyond the last slot (overflow), one row with empty slots; decoder ids shifted."""
  rng = np.random.default_rng(seed)
  enc = np.zeros((B, T), np.int32)
  for b in range(B):
    t, p = 0, 0
    end = T - 5 * b  # row b ends with 5*b padding bytes
    while t < end:
      n = int(rng.integers(1, 7))
      enc[b, t : min(t + n, end)] = p + 1 if p < P else 0  # past the slots: overflow
      t, p = t + n, p + 1
  patch_seg = np.zeros((B, P), np.int32)
  for b in range(B):
    used = np.unique(enc[b][enc[b] > 0])
    patch_seg[b, used - 1] = used
  dec = np.where(enc > 1, enc - 1, 0)  # a byte reads the patch before its own
  return jnp.asarray(enc), jnp.asarray(dec), jnp.asarray(patch_seg)


def dense(q, k, v, q_seg, kv_seg):
  return attention(q, k, v, Mask(q_segment_ids=q_seg, kv_segment_ids=kv_seg, causal=False))


@pytest.mark.parametrize("patches_query", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_masked_attention_values_and_gradients(patches_query, seed):
  enc, dec, patch_seg = layout(seed)
  keys = jax.random.split(jax.random.key(seed), 4)
  nq, nk = (P * K, T) if patches_query else (T, P * K)
  q = jax.random.normal(keys[0], (B, nq, N, H)) * 2.0
  k = jax.random.normal(keys[1], (B, nk, N, H)) * 2.0
  v = jax.random.normal(keys[2], (B, nk, N, H))
  ct = jax.random.normal(keys[3], (B, nq, N, H))
  slots = jnp.repeat(patch_seg, K, axis=1)
  if patches_query:
    pc, segs = PatchCross(enc, patch_seg, K, True), (slots, enc)
  else:
    pc, segs = PatchCross(dec, patch_seg, K, False), (dec, slots)

  def loss(fn, q, k, v):
    return jnp.sum(fn(q, k, v) * ct)

  new = lambda q, k, v: patch_cross_attention(q, k, v, pc)
  old = lambda q, k, v: dense(q, k, v, *segs)
  np.testing.assert_allclose(new(q, k, v), old(q, k, v), atol=2e-5, rtol=2e-5)
  g_new = jax.grad(loss, argnums=(1, 2, 3))(new, q, k, v)
  g_old = jax.grad(loss, argnums=(1, 2, 3))(old, q, k, v)
  for a, b in zip(g_new, g_old):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
  # Rows that see nothing are exactly zero: padding/overflow bytes, empty patch slots.
  out = np.asarray(new(q, k, v))
  if patches_query:
    assert np.all(out[np.asarray(slots) == 0] == 0)
  else:
    assert np.all(out[np.asarray(dec) == 0] == 0)
  assert np.any(out != 0)
