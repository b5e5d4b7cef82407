"""Attention masks as descriptions (causal, document segments, windows), never dense arrays.

Defined below both `jaxtok.nn.attention` and the Pallas kernels: a kernel reads
the description to skip the blocks a mask rules out; `dense` builds the
reference boolean mask for the XLA path and for tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Mask:
  """Which keys each query may see.

  A query at index i sees key j iff all enabled rules hold:
    segments: q_segment_ids[i] == kv_segment_ids[j] and both are non-zero
              (0 marks padding / unused cache slots); with `segment_window=w`
              instead 0 <= q_segment_ids[i] - kv_segment_ids[j] < w (a query
              sees its own segment and the w-1 before it: BLT patch windows);
    causal:   kv_idx[j] <= q_idx[i];
    window:   q_idx[i] - kv_idx[j] < window.
  `q_idx`/`kv_idx` default to 0..T-1; a KV cache passes absolute indices.
  Rows that see no key at all produce zeros, never NaN.
  """

  q_segment_ids: jax.Array | None = None  # B x Tq int
  kv_segment_ids: jax.Array | None = None  # B x Tk int
  q_idx: jax.Array | None = None  # B x Tq int
  kv_idx: jax.Array | None = None  # B x Tk int
  causal: bool = struct.field(pytree_node=False, default=True)
  window: int | None = struct.field(pytree_node=False, default=None)
  segment_window: int | None = struct.field(pytree_node=False, default=None)

  @classmethod
  def self_attention(cls, segment_ids_BxT, *, causal: bool = True, window: int | None = None):
    """Queries and keys are the same positions: document segments, causal, optional window."""
    return cls(
      q_segment_ids=segment_ids_BxT, kv_segment_ids=segment_ids_BxT, causal=causal, window=window
    )

  def dense(self, batch: int, tq: int, tk: int) -> jax.Array:
    """Boolean B x Tq x Tk mask (the reference; kernels never build it)."""
    ok = jnp.ones((batch, tq, tk), dtype=bool)
    if self.q_segment_ids is not None or self.kv_segment_ids is not None:
      qs = _or_ones(self.q_segment_ids, batch, tq)
      ks = _or_ones(self.kv_segment_ids, batch, tk)
      ok &= (qs[:, :, None] != 0) & (ks[:, None, :] != 0)
      if self.segment_window is None:
        ok &= qs[:, :, None] == ks[:, None, :]
      else:
        delta = qs[:, :, None] - ks[:, None, :]
        ok &= (delta >= 0) & (delta < self.segment_window)
    if self.causal or self.window is not None:
      qi = _or_arange(self.q_idx, batch, tq)[:, :, None]
      ki = _or_arange(self.kv_idx, batch, tk)[:, None, :]
      if self.causal:
        ok &= ki <= qi
      if self.window is not None:
        ok &= qi - ki < self.window
    return ok


def _or_ones(x, b, t):
  return jnp.ones((b, t), jnp.int32) if x is None else x


def _or_arange(x, b, t):
  return jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)) if x is None else x
