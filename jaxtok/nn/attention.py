"""Attention behind one function with an `impl` switch.

Masks are *described* (causal, document segments, sliding window), never passed
as dense [T, T] arrays, so that a kernel can skip the blocks a mask rules out.
`impl="xla"` is the reference: it materialises the mask and uses einsums.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtok.masking import Mask
from pallas_kernels import flash_attention

IMPLS = ("xla", "pallas")


def attention(
  q_BxTxNxH: jax.Array,
  k_BxSxKxH: jax.Array,
  v_BxSxKxH: jax.Array,
  mask: Mask,
  *,
  scale: float | None = None,
  impl: str = "xla",
) -> jax.Array:
  """Multi-head attention with grouped KV heads (N query heads, K | N kv heads)."""
  n, kv = q_BxTxNxH.shape[2], k_BxSxKxH.shape[2]
  if n % kv:
    raise ValueError(f"{n} query heads are not a multiple of {kv} kv heads")
  scale = q_BxTxNxH.shape[-1] ** -0.5 if scale is None else scale
  if impl == "xla":
    if _can_chunk(mask, q_BxTxNxH.shape[1], k_BxSxKxH.shape[1]):
      return _attention_xla_chunked(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask, scale)
    return _attention_xla(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask, scale)
  if impl == "pallas":
    return flash_attention.attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask, scale=scale)
  raise ValueError(f"attention impl must be one of {IMPLS}, got {impl!r}")


def _attention_xla(q, k, v, mask: Mask, scale: float) -> jax.Array:
  b, t, n, h = q.shape
  s, kv = k.shape[1], k.shape[2]
  q = q.reshape(b, t, kv, n // kv, h)
  logits = jnp.einsum(
    "btkgh,bskh->bkgts", q * jnp.asarray(scale, q.dtype), k, preferred_element_type=jnp.float32
  )
  ok = mask.dense(b, t, s)[:, None, None]  # B x 1 x 1 x T x S
  logits = jnp.where(ok, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgts,bskh->btkgh", probs, v)
  # A row with no visible key would be uniform over garbage: zero it (on the output, an
  # S-th of the elementwise work of zeroing its probabilities, forward and backward).
  seen = jnp.any(ok, axis=-1)[:, 0, 0, :, None, None, None]  # B x T x 1 x 1 x 1
  return jnp.where(seen, out, 0.0).astype(v.dtype).reshape(b, t, n, h)


# Causal self-attention over a row: query chunk i only needs keys up to its own
# end (and, with a window, from window-1 before its start). Cutting the key
# range per chunk skips the masked upper triangle: ~40% less time on CPU at
# T=512, and the [T, T] intermediates never exist at full size.
CHUNK = 128


def _can_chunk(mask: Mask, tq: int, tk: int) -> bool:
  return (
    mask.causal
    and mask.q_idx is None
    and mask.kv_idx is None
    and tq == tk
    and tq > CHUNK
    and mask.segment_window is None
  )


def _attention_xla_chunked(q, k, v, mask: Mask, scale: float) -> jax.Array:
  b, t = q.shape[:2]
  outs = []
  for q0 in range(0, t, CHUNK):
    q1 = min(t, q0 + CHUNK)
    k0 = 0 if mask.window is None else max(0, q0 - mask.window + 1)
    sub = Mask(
      q_segment_ids=None if mask.q_segment_ids is None else mask.q_segment_ids[:, q0:q1],
      kv_segment_ids=None if mask.kv_segment_ids is None else mask.kv_segment_ids[:, k0:q1],
      q_idx=jnp.broadcast_to(jnp.arange(q0, q1, dtype=jnp.int32), (b, q1 - q0)),
      kv_idx=jnp.broadcast_to(jnp.arange(k0, q1, dtype=jnp.int32), (b, q1 - k0)),
      causal=True,
      window=mask.window,
    )
    outs.append(_attention_xla(q[:, q0:q1], k[:, k0:q1], v[:, k0:q1], sub, scale))
  return jnp.concatenate(outs, axis=1)


def cached_attention(
  q_BxTxNxH: jax.Array,
  k_cache_BxKxSxH: jax.Array,
  v_cache_BxKxHxS: jax.Array,
  cache_mask: Mask,
  k_new_BxTxKxH: jax.Array,
  v_new_BxTxKxH: jax.Array,
  new_mask: Mask,
  *,
  scale: float | None = None,
) -> jax.Array:
  """Decoding: a chunk of T queries attends to a read-only cache and to the chunk's own keys.

  Equal to writing the chunk into the cache and attending to it, without the
  write: the caller stores the chunk's keys/values afterwards, in place, so a
  step reads the cache once and copies nothing of it. Keys are laid out
  [B, K, S, H] and values [B, K, H, S]: both products are then batched matmuls
  contracting the cache's minor axis, with no transposed copy of the cache. `cache_mask` says which
  slots each query sees, `new_mask` which of the chunk's keys (causal, window).
  """
  b, t, n, h = q_BxTxNxH.shape
  kv, s = k_cache_BxKxSxH.shape[1:3]
  scale = h**-0.5 if scale is None else scale
  q = (q_BxTxNxH * jnp.asarray(scale, q_BxTxNxH.dtype)).reshape(b, t, kv, n // kv, h)
  f32 = jnp.float32
  cache = jnp.einsum("btkgh,bksh->bkgts", q, k_cache_BxKxSxH, preferred_element_type=f32)
  own = jnp.einsum("btkgh,bjkh->bkgtj", q, k_new_BxTxKxH, preferred_element_type=f32)
  logits = jnp.concatenate([cache, own], axis=-1)  # B x K x G x T x (S + T): scores, not caches
  ok = jnp.concatenate([cache_mask.dense(b, t, s), new_mask.dense(b, t, t)], axis=-1)
  ok = ok[:, None, None]
  probs = jax.nn.softmax(jnp.where(ok, logits, jnp.finfo(f32).min), axis=-1)
  probs = jnp.where(jnp.any(ok, axis=-1, keepdims=True), probs, 0.0)  # sees nothing: zeros
  dtype = v_cache_BxKxHxS.dtype
  p_cache, p_own = probs[..., :s].astype(dtype), probs[..., s:].astype(dtype)
  out = jnp.einsum("bkgts,bkhs->btkgh", p_cache, v_cache_BxKxHxS, preferred_element_type=f32)
  out = out + jnp.einsum("bkgtj,bjkh->btkgh", p_own, v_new_BxTxKxH, preferred_element_type=f32)
  return out.reshape(b, t, n, h).astype(dtype)


# Slots of a stacked cache `ragged_cached_attention` reads at a time: big enough that a
# loop iteration's overhead is small next to its reads, small enough that the slots
# beyond a row's end it reads are few.
RAGGED_CHUNK = 256


def ragged_cached_attention(
  q_BxTxNxH: jax.Array,
  k_LxBxKxSxH: jax.Array,
  v_LxBxKxHxS: jax.Array,
  layer,
  lo_B: jax.Array,
  hi_B: jax.Array,
  rows_B: jax.Array,
  k_new_BxTxKxH: jax.Array,
  v_new_BxTxKxH: jax.Array,
  new_mask: Mask,
  *,
  scale: float | None = None,
  chunk: int = RAGGED_CHUNK,
) -> jax.Array:
  """`cached_attention` on layer `layer` of stacked caches, where row b sees the slots
  [lo_B[b], hi_B[b]) (no window), computed for the rows in rows_B only (the others see
  only the chunk itself).

  Each such row reads its slots in chunks straight from the stacked caches, with a
  running softmax: the cost follows the slots rows fill and the rows asking, not the
  capacity times the batch, and no copy of a layer's caches is made (CPU dots read
  whole operands: slicing a layer before one copies it).
  """
  b, t, n, h = q_BxTxNxH.shape
  kv, s = k_LxBxKxSxH.shape[2:4]
  c = min(chunk, s)
  scale = h**-0.5 if scale is None else scale
  f32 = jnp.float32
  q = (q_BxTxNxH * jnp.asarray(scale, q_BxTxNxH.dtype)).reshape(b, t, kv, n // kv, h)
  # The chunk's own keys first: the running max, sum and output of every row.
  own = jnp.einsum("btkgh,bjkh->bkgtj", q, k_new_BxTxKxH, preferred_element_type=f32)
  own = jnp.where(new_mask.dense(b, t, t)[:, None, None], own, -jnp.inf)
  m = jnp.max(own, axis=-1)  # B x K x G x T
  p = jnp.exp(own - _finite(m)[..., None])
  acc = jnp.einsum(
    "bkgtj,bjkh->bkgth", p.astype(v_new_BxTxKxH.dtype), v_new_BxTxKxH, preferred_element_type=f32
  )
  l = jnp.sum(p, axis=-1)
  order = jnp.argsort(~rows_B, stable=True)  # the asking rows first

  def row_body(carry):
    i, m, l, acc = carry
    r = order[i]
    q_r = q[r]  # T x K x G x H
    lo, hi = lo_B[r], hi_B[r]
    first = lo // c * c

    def chunk_body(inner):
      j, m_r, l_r, acc_r = inner
      s0 = first + j * c
      at = jnp.minimum(s0, s - c)  # the last chunk may overlap the one before: masked
      k_c = jax.lax.dynamic_slice(k_LxBxKxSxH, (layer, r, 0, at, 0), (1, 1, kv, c, h))[0, 0]
      v_c = jax.lax.dynamic_slice(v_LxBxKxHxS, (layer, r, 0, 0, at), (1, 1, kv, h, c))[0, 0]
      idx = at + jnp.arange(c)
      seen = (idx >= s0) & (idx >= lo) & (idx < hi)
      sc = jnp.einsum("tkgh,kch->kgtc", q_r, k_c, preferred_element_type=f32)
      sc = jnp.where(seen, sc, -jnp.inf)
      m_new = jnp.maximum(m_r, jnp.max(sc, axis=-1))
      ref = _finite(m_new)
      p = jnp.exp(sc - ref[..., None])
      alpha = jnp.exp(m_r - ref)
      pv = jnp.einsum("kgtc,khc->kgth", p.astype(v_c.dtype), v_c, preferred_element_type=f32)
      return j + 1, m_new, alpha * l_r + jnp.sum(p, axis=-1), alpha[..., None] * acc_r + pv

    n_chunks = jnp.maximum(hi - first + c - 1, 0) // c
    _, m_r, l_r, acc_r = jax.lax.while_loop(
      lambda inner: inner[0] < n_chunks, chunk_body, (jnp.zeros((), jnp.int32), m[r], l[r], acc[r])
    )
    return i + 1, m.at[r].set(m_r), l.at[r].set(l_r), acc.at[r].set(acc_r)

  n_rows = jnp.sum(rows_B.astype(jnp.int32))
  _, m, l, acc = jax.lax.while_loop(
    lambda carry: carry[0] < n_rows, row_body, (jnp.zeros((), jnp.int32), m, l, acc)
  )
  out = jnp.where(
    l[..., None] > 0, acc / jnp.where(l > 0, l, 1.0)[..., None], 0.0
  )  # B x K x G x T x H
  return jnp.moveaxis(out, 3, 1).reshape(b, t, n, h).astype(v_LxBxKxHxS.dtype)


def _finite(m):
  """The running max where some key was seen, else 0 (exp(-inf - 0) = 0, not NaN)."""
  return jnp.where(jnp.isfinite(m), m, 0.0)
