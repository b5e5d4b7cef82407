"""Pooling of byte states into patches behind one function with an `impl` switch.

`impl="xla"` (the default and the reference) is `jax.ops.segment_max/sum`;
`impl="pallas"` runs the `pallas_kernels.segment_pool` kernel (interpreted on
CPU). The kernel stays opt-in: `bench/kernels.py` measures it slower than XLA
on CPU, and it has not been measured on an accelerator yet.
"""

from __future__ import annotations

import jax

from pallas_kernels import segment_pool as kernel

IMPLS = ("xla", "pallas")


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
  kernel.check(x_BxTxD, ids_BxT, num_segments, kind)
  if impl == "xla":
    return kernel.segment_pool_reference(x_BxTxD, ids_BxT, num_segments, kind)
  if impl == "pallas":
    return kernel.segment_pool(x_BxTxD, ids_BxT, num_segments, kind)
  raise ValueError(f"pooling impl must be one of {IMPLS}, got {impl!r}")
