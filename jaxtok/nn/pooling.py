"""Pooling of byte states into patches behind one function with an `impl` switch.

`impl="xla"` (the default and the reference) is `jax.ops.segment_max/sum`;
`impl="pallas"` runs the `pallas_kernels.segment_pool` kernel (interpreted on
CPU). The kernel stays opt-in: `bench/kernels.py` measures it slower than XLA
on CPU, and it has not been measured on an accelerator yet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLS = ("xla", "pallas")
KINDS = ("max", "mean")


def segment_pool(
  x_BxTxD: jax.Array,
  ids_BxT: jax.Array,
  num_segments: int,
  kind: str = "max",
  *,
  impl: str = "xla",
) -> jax.Array:
  """B x num_segments x D: max or mean over the positions t with ids_BxT[:, t] = p.

  Ids outside [0, num_segments) (e.g. -1 on padding) are ignored; segments with
  no position pool to zeros. Differentiable in x (a max's gradient is split
  evenly among tied maxima).
  """
  check(x_BxTxD, ids_BxT, num_segments, kind)
  if impl == "xla":
    return _segment_pool_xla(x_BxTxD, ids_BxT.astype(jnp.int32), num_segments, kind)
  if impl == "pallas":
    from pallas_kernels import segment_pool as kernel  # optional dependency

    return kernel.segment_pool(x_BxTxD, ids_BxT, num_segments, kind)
  raise ValueError(f"pooling impl must be one of {IMPLS}, got {impl!r}")


def check(x_BxTxD, ids_BxT, num_segments: int, kind: str) -> None:
  """Clear errors for bad arguments (shared with the kernel)."""
  if kind not in KINDS:
    raise ValueError(f"pooling kind must be one of {KINDS}, got {kind!r}")
  if x_BxTxD.ndim != 3 or ids_BxT.shape != x_BxTxD.shape[:2]:
    raise ValueError(f"expected x B x T x D and ids B x T, got {x_BxTxD.shape} and {ids_BxT.shape}")
  if not jnp.issubdtype(ids_BxT.dtype, jnp.integer):
    raise ValueError(f"segment ids must be integers, got {ids_BxT.dtype}")
  if num_segments < 1:
    raise ValueError(f"num_segments must be positive, got {num_segments}")


def _segment_pool_xla(x_BxTxD, ids_BxT, num_segments, kind):
  def one(x, ids):
    count = jax.ops.segment_sum(jnp.ones_like(ids, x.dtype), ids, num_segments)[:, None]
    if kind == "max":
      return jnp.where(count > 0, jax.ops.segment_max(x, ids, num_segments), 0).astype(x.dtype)
    return (jax.ops.segment_sum(x, ids, num_segments) / jnp.maximum(count, 1)).astype(x.dtype)

  return jax.vmap(one)(x_BxTxD, ids_BxT)
