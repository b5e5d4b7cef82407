"""BLT's own-patch cross-attention without a dense [queries, keys] mask.

Between bytes and patches each query sees one patch's worth of keys: a patch query the
bytes of its patch (encoder), a byte the `k` vectors of one latent (decoder). Through
`attention` with a `Mask` that is a [B, N, P*k, T] softmax of which almost every entry
is masked out: on CPU that elementwise work costs as much as a self-attention layer.
Here the decoder gathers the k keys of each byte's patch (a softmax over k), and the
encoder gathers each byte's patch queries and takes the softmax over a patch's bytes
with segment sums. Same result as `attention` with the equal-segment-ids mask (tests).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class PatchCross:
  """Who sees whom: byte t belongs to (encoder) or reads (decoder) patch byte_seg[t] - 1.

  byte_seg_BxT: patch index + 1 per byte, 0 for none; patch_seg_BxP: j + 1 for the
  slots in use, 0 for empty ones; k vectors per patch. `patches_query`: True when the
  queries are the P*k patch vectors and the keys the bytes (encoder), False for the
  reverse (decoder).
  """

  byte_seg_BxT: jax.Array
  patch_seg_BxP: jax.Array
  k: int = struct.field(pytree_node=False)
  patches_query: bool = struct.field(pytree_node=False)


def _per_byte(x_BxPxKxNxH, idx_BxT):
  """Row idx[b, t] of x[b] for every byte: [B, T, K, N, H] (idx clipped into range)."""
  b, p = x_BxPxKxNxH.shape[:2]
  flat = x_BxPxKxNxH.reshape(b, p, -1)
  out = jnp.take_along_axis(flat, jnp.clip(idx_BxT, 0, p - 1)[..., None], axis=1)
  return out.reshape(b, idx_BxT.shape[1], *x_BxPxKxNxH.shape[2:])


def patch_cross_attention(q, k, v, pc: PatchCross, *, scale: float | None = None) -> jax.Array:
  """Multi-head cross-attention (no kv-head grouping) under `pc`; rows that see nothing are 0.

  Encoder (`pc.patches_query`): q [B, P*k, N, H], k/v [B, T, N, H] -> [B, P*k, N, H].
  Decoder: q [B, T, N, H], k/v [B, P*k, N, H] -> [B, T, N, H].
  """
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  b, p = pc.patch_seg_BxP.shape
  idx = pc.byte_seg_BxT - 1
  if pc.patches_query:
    return _patches_query_bytes(q, k, v, idx, b, p, pc.k, scale)
  n, h = q.shape[2:]
  kk = _per_byte(k.reshape(b, p, pc.k, n, h), idx)  # B x T x k x N x H
  vv = _per_byte(v.reshape(b, p, pc.k, n, h), idx)
  logits = jnp.einsum(
    "btnh,btknh->btnk", q * jnp.asarray(scale, q.dtype), kk, preferred_element_type=jnp.float32
  )
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("btnk,btknh->btnh", probs, vv)
  used = jnp.take_along_axis(pc.patch_seg_BxP, jnp.clip(idx, 0, p - 1), axis=1) > 0
  return jnp.where(((idx >= 0) & used)[..., None, None], out, 0.0).astype(v.dtype)


def _patches_query_bytes(q, k, v, idx, b, p, kq, scale):
  t, n, h = k.shape[1:]
  qq = _per_byte(q.reshape(b, p, kq, n, h), idx)  # the queries of each byte's patch
  logits = jnp.einsum(
    "btknh,btnh->btkn", qq * jnp.asarray(scale, q.dtype), k, preferred_element_type=jnp.float32
  )
  # Softmax over the bytes of each patch: segments b * P + patch; bytes in no patch dropped.
  valid = idx >= 0
  seg = jnp.where(valid, jnp.arange(b)[:, None] * p + idx, b * p).reshape(b * t)
  flat = logits.reshape(b * t, kq * n)
  top = jax.lax.stop_gradient(jax.ops.segment_max(flat, seg, b * p))  # shift only: no gradient
  top = jnp.take(jnp.concatenate([top, jnp.zeros((1, kq * n), top.dtype)]), seg, axis=0)
  e = jnp.where(valid.reshape(b * t, 1), jnp.exp(flat - top), 0.0)
  den = jax.ops.segment_sum(e, seg, b * p)  # B*P x k*N
  w = e.reshape(b * t, kq, n, 1) * v.reshape(b * t, 1, n, h).astype(jnp.float32)
  num = jax.ops.segment_sum(w, seg, b * p)  # B*P x k x N x H
  den = den.reshape(b * p, kq, n, 1)
  out = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
  return out.reshape(b, p * kq, n, h).astype(v.dtype)
