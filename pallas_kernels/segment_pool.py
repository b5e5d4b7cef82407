"""Pooling of byte states into patches (max or mean), for the BLT local encoder.

`ids_BxT[b, t]` names the patch of byte t; ids outside [0, num_segments) (e.g.
-1 on padding) are ignored, and patches with no byte pool to zeros.

Kernel: one program per (batch row, block of `block_p` patches). Each byte
block's live id range is summarised on the host side of the kernel; a patch
block visits only the byte blocks whose range meets its own ids (a contiguous
run when ids are sorted, as patch ids are), so the work is O(T) per row, not
O(T x P). Inside a visited block every patch of the block takes a masked
max / sum over the block's rows.

Backward (`jax.custom_vjp`) is jnp: it is a gather of the patch cotangent back
to the bytes (split evenly among tied maxima, as `jax.ops.segment_max`'s
gradient does), which XLA already runs at memory bandwidth; a kernel has
nothing to fuse there.

The jnp twin (`segment_pool_reference`) is `jaxtok.nn.pooling`'s XLA path
(`jax.ops.segment_max/sum`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from pallas_kernels import _backend

KINDS = ("max", "mean")
BLOCK_P = 8
BLOCK_T = 64
_BIG = 1 << 29


@dataclasses.dataclass(frozen=True)
class _Cfg:
  kind: str
  num_segments: int
  bp: int
  bt: int
  backend: str


def segment_pool_reference(x_BxTxD, ids_BxT, num_segments: int, kind: str) -> jax.Array:
  """The jnp twin (`jaxtok.nn.pooling.segment_pool(impl="xla")`): segment_max/sum per row."""
  ids_BxT = ids_BxT.astype(jnp.int32)

  def one(x, ids):
    count = jax.ops.segment_sum(jnp.ones_like(ids, x.dtype), ids, num_segments)[:, None]
    if kind == "max":
      return jnp.where(count > 0, jax.ops.segment_max(x, ids, num_segments), 0).astype(x.dtype)
    return (jax.ops.segment_sum(x, ids, num_segments) / jnp.maximum(count, 1)).astype(x.dtype)

  return jax.vmap(one)(x_BxTxD, ids_BxT)


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


def segment_pool(
  x_BxTxD: jax.Array,
  ids_BxT: jax.Array,
  num_segments: int,
  kind: str,
  *,
  block_p: int = BLOCK_P,
  block_t: int = BLOCK_T,
  backend: str | None = None,
) -> jax.Array:
  """B x num_segments x D max or mean of the bytes of each patch (Pallas kernel)."""
  check(x_BxTxD, ids_BxT, num_segments, kind)
  backend = _backend.resolve(backend)
  b, t, d = x_BxTxD.shape
  bp = _backend.block_size(block_p, num_segments, backend)
  bt = _backend.block_size(block_t, t, backend)
  if backend == "tpu" and (bp % 8 or bt % 8):
    raise ValueError(f"TPU blocks must be multiples of 8, got block_p={bp}, block_t={bt}")
  cfg = _Cfg(kind=kind, num_segments=num_segments, bp=bp, bt=bt, backend=backend)
  t_pad = _backend.round_up(t, bt)
  x = jnp.pad(x_BxTxD, ((0, 0), (0, t_pad - t), (0, 0)))
  ids = jnp.pad(ids_BxT.astype(jnp.int32), ((0, 0), (0, t_pad - t)), constant_values=-1)
  ids = jnp.where((ids >= 0) & (ids < num_segments), ids, -1)
  pool = _backend.per_shard(
    functools.partial(_pool, cfg), [("batch", None, None), ("batch", None)], ("batch", None, None)
  )
  return pool(x, ids)[:, :num_segments]


def _tables(cfg: _Cfg, ids):
  """Per batch row: live id range of every byte block (nT*2) and the range of
  byte blocks every patch block visits (nP*2), flattened for scalar reads."""
  b, t = ids.shape
  blocks = ids.reshape(b, t // cfg.bt, cfg.bt)
  live = blocks >= 0
  lo = jnp.where(live, blocks, _BIG).min(-1)
  hi = jnp.where(live, blocks, -_BIG).max(-1)
  n_p = _backend.round_up(cfg.num_segments, cfg.bp) // cfg.bp
  p0 = jnp.arange(n_p)[None, :, None] * cfg.bp
  vis = (lo[:, None, :] < p0 + cfg.bp) & (hi[:, None, :] >= p0)  # B x nP x nT
  n = vis.shape[-1]
  first = jnp.where(vis.any(-1), jnp.argmax(vis, -1), 0)
  last = jnp.where(vis.any(-1), n - jnp.argmax(vis[..., ::-1], -1), 0)
  ranges = jnp.stack([first, last], -1).astype(jnp.int32).reshape(b, -1)
  return jnp.stack([lo, hi], -1).astype(jnp.int32).reshape(b, -1), ranges


def _pool_kernel(idsum_ref, range_ref, x_ref, ids_ref, out_ref, count_ref, *, cfg: _Cfg):
  b, i = pl.program_id(0), pl.program_id(1)
  bp, bt = cfg.bp, cfg.bt
  p0 = i * bp
  d = x_ref.shape[-1]
  fill = -jnp.inf if cfg.kind == "max" else 0.0

  def visit(j, carry):
    rows = pl.ds(pl.multiple_of(j * bt, bt), bt)
    x = x_ref[rows, :].astype(jnp.float32)  # bt x D
    ids = ids_ref[rows, :]  # bt x 1
    new = []
    for p, (acc, count) in enumerate(carry):  # unrolled over the block's patches
      sel = ids == p0 + p
      if cfg.kind == "max":
        acc = jnp.maximum(acc, jnp.where(sel, x, fill).max(axis=0, keepdims=True))
      else:
        acc = acc + jnp.where(sel, x, 0.0).sum(axis=0, keepdims=True)
      new.append((acc, count + sel.astype(jnp.float32).sum(axis=0, keepdims=True)))
    return tuple(new)

  def body(j, carry):
    meets = (idsum_ref[b, 2 * j] < p0 + bp) & (idsum_ref[b, 2 * j + 1] >= p0)
    return jax.lax.cond(meets, visit, lambda j, c: c, j, carry)

  init = tuple(
    (jnp.full((1, d), fill, jnp.float32), jnp.zeros((1, 1), jnp.float32)) for _ in range(bp)
  )
  pooled = jax.lax.fori_loop(range_ref[b, 2 * i], range_ref[b, 2 * i + 1], body, init)
  for p, (acc, count) in enumerate(pooled):
    seen = count > 0
    value = acc if cfg.kind == "max" else acc / jnp.where(seen, count, 1.0)
    out_ref[pl.ds(p, 1), :] = jnp.where(seen, value, 0.0).astype(out_ref.dtype)
    count_ref[pl.ds(p, 1), :] = count


def _forward(cfg: _Cfg, x, ids):
  b, t, d = x.shape
  p_pad = _backend.round_up(cfg.num_segments, cfg.bp)
  idsum, ranges = _tables(cfg, ids)
  tab = _backend.table_spec(cfg.backend)
  out, count = pl.pallas_call(
    functools.partial(_pool_kernel, cfg=cfg),
    grid=(b, p_pad // cfg.bp),
    in_specs=[
      tab,
      tab,
      pl.BlockSpec((None, t, d), lambda b, i: (b, 0, 0)),
      pl.BlockSpec((None, t, 1), lambda b, i: (b, 0, 0)),
    ],
    out_specs=[
      pl.BlockSpec((None, cfg.bp, d), lambda b, i: (b, i, 0)),
      pl.BlockSpec((None, cfg.bp, 1), lambda b, i: (b, i, 0)),
    ],
    out_shape=[
      jax.ShapeDtypeStruct((b, p_pad, d), x.dtype),
      jax.ShapeDtypeStruct((b, p_pad, 1), jnp.float32),
    ],
    name=f"segment_{cfg.kind}_pool",
    **_backend.call_kwargs(cfg.backend),
  )(idsum, ranges, x, ids[..., None])
  return out, count


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pool(cfg: _Cfg, x, ids):
  return _forward(cfg, x, ids)[0]


def _pool_fwd(cfg, x, ids):
  out, count = _forward(cfg, x, ids)
  return out, (x, ids, out, count)


def _pool_bwd(cfg, res, g_BxPxD):
  x, ids, out, count = res
  live = (ids >= 0)[..., None]
  at = lambda y: jnp.take_along_axis(y, jnp.maximum(ids, 0)[..., None], axis=1)  # B x T x .
  g = g_BxPxD.astype(jnp.float32)
  if cfg.kind == "mean":
    dx = at(g / jnp.maximum(count, 1.0))
  else:  # the maximum's cotangent, split evenly among the bytes that reach it
    hit = live & (x == at(out))
    ties = jax.vmap(lambda h, i: jax.ops.segment_sum(h, i, out.shape[1]))(
      hit.astype(jnp.float32), jnp.where(ids >= 0, ids, out.shape[1])
    )
    dx = jnp.where(hit, at(g / jnp.maximum(ties, 1.0)), 0.0)
  return jnp.where(live, dx, 0.0).astype(x.dtype), None


_pool.defvjp(_pool_fwd, _pool_bwd)
