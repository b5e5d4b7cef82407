"""Flash attention for `jaxtok.nn.attention.Mask`: described masks, skipped blocks.

The mask is never materialised. Each block of queries and each block of keys
is summarised by the range of its (non-padding) segment ids and positions; a
query block visits a key block only if those ranges allow some visible pair
(`_may_see`). Summaries are computed in jnp from the mask arrays, so the
ranges are data-dependent: document packing, BLT patch windows
(`segment_window`), causal, sliding windows and KV-cache indices all skip the
blocks they rule out, and the work done scales with the unmasked area.

Kernels (one program per batch row, query head and block):
  forward   grid (B, N, T/bq): online softmax over the visited key blocks;
            writes the output, the log-sum-exp and the number of visited blocks.
  backward  FlashAttention-2 style, two Pallas kernels that recompute the
            probabilities from the saved log-sum-exp: dq (grid over query
            blocks) and dk/dv (grid over key blocks, visiting the query blocks
            that see them). A Pallas backward keeps memory O(T) and skips the
            same blocks; a blocked jnp backward could not skip data-dependent
            blocks without gathers. dk/dv are computed per query head and summed
            over each GQA group afterwards.
Rows that see no key return zeros (no NaN, zero gradients).

Arrays enter the kernels as B x heads x T x H so that every block's last two
dims are (rows, head_dim): legal for TPU (8, 128) tiling with the default
128 x 128 blocks. Segment ids and positions travel as columns (B x T x 1) for
queries and rows (B x 1 x S) for keys. Ragged lengths are padded to whole
blocks with segment 0 (masked).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxtok.masking import Mask
from pallas_kernels import _backend

BLOCK_Q = 128
BLOCK_K = 128
_NEG = -1e30  # finite "minus infinity": exp(_NEG - m) underflows to 0 without NaN
_BIG = 1 << 29  # empty-range sentinel; differences of two of them fit in int32


@dataclasses.dataclass(frozen=True)
class _Cfg:
  """Static description of one call (hashable: a custom_vjp nondiff argument)."""

  causal: bool
  window: int | None
  segment_window: int | None
  scale: float
  bq: int
  bk: int
  groups: int  # query heads per kv head
  backend: str


def attention(
  q_BxTxNxH: jax.Array,
  k_BxSxKxH: jax.Array,
  v_BxSxKxH: jax.Array,
  mask: Mask,
  *,
  scale: float | None = None,
  block_q: int = BLOCK_Q,
  block_k: int = BLOCK_K,
  backend: str | None = None,
) -> jax.Array:
  """Attention under `mask`, same contract as `jaxtok.nn.attention.attention`.

  Differentiable in q, k, v. Inside an ambient mesh (`jax.set_mesh`) the kernels
  run per shard under `jax.shard_map`: batch over the mesh axes that
  `jaxtok.sharding` maps "batch" to, heads over those it maps "heads" to.
  `backend` ("cpu" | "tpu" | "gpu") overrides the default JAX backend.
  """
  kw = dict(scale=scale, block_q=block_q, block_k=block_k, backend=backend)
  return attention_with_stats(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask, **kw)[0]


def attention_with_stats(
  q_BxTxNxH: jax.Array,
  k_BxSxKxH: jax.Array,
  v_BxSxKxH: jax.Array,
  mask: Mask,
  *,
  scale: float | None = None,
  block_q: int = BLOCK_Q,
  block_k: int = BLOCK_K,
  backend: str | None = None,
) -> tuple[jax.Array, jax.Array]:
  """`attention`, plus the number of key blocks each query block visited
  (B x N x ceil(T/bq)) as counted by the forward kernel: the skipped work, measured."""
  b, t, n, h = q_BxTxNxH.shape
  _, s, kv, _ = k_BxSxKxH.shape
  if v_BxSxKxH.shape != k_BxSxKxH.shape or (k_BxSxKxH.shape[0], k_BxSxKxH.shape[3]) != (b, h):
    raise ValueError(
      f"k {k_BxSxKxH.shape} and v {v_BxSxKxH.shape} must be B x S x K x H for q {q_BxTxNxH.shape}"
    )
  if n % kv:
    raise ValueError(f"{n} query heads are not a multiple of {kv} kv heads")
  for name, x, want in [
    ("q_segment_ids", mask.q_segment_ids, (b, t)),
    ("q_idx", mask.q_idx, (b, t)),
    ("kv_segment_ids", mask.kv_segment_ids, (b, s)),
    ("kv_idx", mask.kv_idx, (b, s)),
  ]:
    if x is not None and x.shape != want:
      raise ValueError(f"Mask.{name} has shape {x.shape}, expected {want}")
  backend = _backend.resolve(backend)
  bq = _backend.block_size(block_q, t, backend)
  bk = _backend.block_size(block_k, s, backend)
  t_pad, s_pad = _backend.round_up(t, bq), _backend.round_up(s, bk)
  if backend == "tpu" and (bq % 8 or (bk % 128 and bk != s_pad)):
    raise ValueError(f"TPU blocks must be multiples of (8, 128) or whole axes, got ({bq}, {bk})")
  cfg = _Cfg(
    causal=mask.causal,
    window=mask.window,
    segment_window=mask.segment_window,
    scale=float(h**-0.5 if scale is None else scale),
    bq=bq,
    bk=bk,
    groups=n // kv,
    backend=backend,
  )
  qseg, qidx = _rows(mask.q_segment_ids, mask.q_idx, b, t, t_pad)
  kseg, kidx = _rows(mask.kv_segment_ids, mask.kv_idx, b, s, s_pad)
  # B x T x N x H -> B x N x T x H, padded to whole blocks (see module docstring).
  heads_first = lambda x, length: jnp.pad(
    x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0))
  ).transpose(0, 2, 1, 3)
  q = heads_first(q_BxTxNxH, t_pad)
  k, v = heads_first(k_BxSxKxH, s_pad), heads_first(v_BxSxKxH, s_pad)
  out, visits = _sharded(cfg, q, k, v, qseg, qidx, kseg, kidx)
  return out.transpose(0, 2, 1, 3)[:, :t], visits


def _rows(seg, idx, b, length, padded):
  """Segment ids (1 where none are given, 0 on padding) and positions, padded."""
  seg = jnp.ones((b, length), jnp.int32) if seg is None else seg.astype(jnp.int32)
  if idx is None:
    idx = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
  widen = ((0, 0), (0, padded - length))
  return jnp.pad(seg, widen), jnp.pad(idx.astype(jnp.int32), widen)


# --- sharding ----------------------------------------------------------------

_HEADS = ("batch", "heads", None, None)
_ROW = ("batch", None)


def _sharded(cfg: _Cfg, q, k, v, qseg, qidx, kseg, kidx):
  fn = _backend.per_shard(
    functools.partial(_flash, cfg), [_HEADS] * 3 + [_ROW] * 4, [_HEADS, ("batch", "heads", None)]
  )
  return fn(q, k, v, qseg, qidx, kseg, kidx)


# --- block summaries ---------------------------------------------------------


def _summaries(seg_BxT, idx_BxT, block: int) -> jax.Array:
  """B x (T/block) x 4: min/max segment id and min/max position over live rows."""
  b, t = seg_BxT.shape
  seg = seg_BxT.reshape(b, t // block, block)
  idx = idx_BxT.reshape(b, t // block, block)
  live = seg != 0
  lo = lambda x: jnp.where(live, x, _BIG).min(-1)
  hi = lambda x: jnp.where(live, x, -_BIG).max(-1)
  return jnp.stack([lo(seg), hi(seg), lo(idx), hi(idx)], axis=-1)


def _may_see(cfg: _Cfg, qs, ks):
  """Whether some query of a block with summary `qs` may see some key of a
  block with summary `ks` (conservative: never False when a pair is visible).
  Works on scalars (inside kernels) and on broadcast arrays (in jnp)."""
  q_smin, q_smax, q_imin, q_imax = qs
  k_smin, k_smax, k_imin, k_imax = ks
  ok = (q_smin <= q_smax) & (k_smin <= k_smax)
  if cfg.segment_window is None:
    ok &= (q_smin <= k_smax) & (k_smin <= q_smax)
  else:  # q - k ranges over [q_smin - k_smax, q_smax - k_smin]; must meet [0, w).
    ok &= (q_smax - k_smin >= 0) & (q_smin - k_smax < cfg.segment_window)
  if cfg.causal:
    ok &= k_imin <= q_imax
  if cfg.window is not None:
    ok &= q_imin - k_imax < cfg.window
  return ok


def _tables(cfg: _Cfg, qseg, qidx, kseg, kidx):
  """Flattened per-batch-row int32 tables the kernels read as scalars:
  q and k block summaries (nQ*4, nK*4) and the visited-block ranges
  [lo, hi) of every query block (nQ*2) and of every key block (nK*2)."""
  qsum = _summaries(qseg, qidx, cfg.bq)
  ksum = _summaries(kseg, kidx, cfg.bk)
  vis = _may_see(
    cfg, [qsum[:, :, None, c] for c in range(4)], [ksum[:, None, :, c] for c in range(4)]
  )  # B x nQ x nK

  def ranges(v):  # first and one-past-last True along the last axis; (0, 0) if none
    n = v.shape[-1]
    lo = jnp.argmax(v, axis=-1)
    hi = n - jnp.argmax(v[..., ::-1], axis=-1)
    any_ = v.any(-1)
    return jnp.stack([jnp.where(any_, lo, 0), jnp.where(any_, hi, 0)], -1).astype(jnp.int32)

  b = qseg.shape[0]
  flat = lambda x: x.reshape(b, -1)
  return flat(qsum), flat(ksum), flat(ranges(vis)), flat(ranges(vis.swapaxes(1, 2)))


def _mask_block(cfg: _Cfg, qs, qi, ks, ki):
  """Elementwise mask of one (bq x 1) query column block vs one (1 x bk) key row block."""
  ok = (qs != 0) & (ks != 0)
  if cfg.segment_window is None:
    ok &= qs == ks
  else:
    d = qs - ks
    ok &= (d >= 0) & (d < cfg.segment_window)
  if cfg.causal:
    ok &= ki <= qi
  if cfg.window is not None:
    ok &= qi - ki < cfg.window
  return ok


def _read4(ref, b, i):
  return [ref[b, i * 4 + c] for c in range(4)]


def _dot_t(a, b):
  """a @ b.T in float32."""
  return jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def _dot(a, b):
  return jax.lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _loop_visible(range_ref, b, i, may_see, visit, init):
  """fori_loop over the other side's blocks j in [range[b, 2i], range[b, 2i + 1]), visiting
  only those `may_see(j)` allows: the block skipping every kernel here shares."""

  def body(j, carry):
    return jax.lax.cond(may_see(j), visit, lambda j, c: c, j, carry)

  return jax.lax.fori_loop(range_ref[b, 2 * i], range_ref[b, 2 * i + 1], body, init)


# --- forward kernel ----------------------------------------------------------


def _fwd_kernel(
  qsum_ref,
  ksum_ref,
  qrange_ref,
  q_ref,
  k_ref,
  v_ref,
  qseg_ref,
  qidx_ref,
  kseg_ref,
  kidx_ref,
  o_ref,
  lse_ref,
  visits_ref,
  *,
  cfg: _Cfg,
):
  b, i = pl.program_id(0), pl.program_id(2)
  bq, bk = cfg.bq, cfg.bk
  q = q_ref[...]
  q = (q * jnp.asarray(cfg.scale, q.dtype)).astype(q.dtype)
  qs, qi = qseg_ref[...], qidx_ref[...]  # bq x 1
  q_summary = _read4(qsum_ref, b, i)

  def visit(j, carry):
    m, l, acc, n = carry
    start = pl.multiple_of(j * bk, bk)
    keys = pl.ds(start, bk)
    s = _dot_t(q, k_ref[keys, :])  # bq x bk
    ok = _mask_block(cfg, qs, qi, kseg_ref[:, keys], kidx_ref[:, keys])
    s = jnp.where(ok, s, _NEG)
    m_new = jnp.maximum(m, s.max(axis=1, keepdims=True))
    p = jnp.where(ok, jnp.exp(s - m_new), 0.0)
    alpha = jnp.exp(m - m_new)
    v = v_ref[keys, :]
    acc = alpha * acc + _dot(p.astype(v.dtype), v)
    return m_new, alpha * l + p.sum(axis=1, keepdims=True), acc, n + 1

  init = (
    jnp.full((bq, 1), _NEG, jnp.float32),
    jnp.zeros((bq, 1), jnp.float32),
    jnp.zeros(o_ref.shape, jnp.float32),
    jnp.int32(0),
  )
  may_see = lambda j: _may_see(cfg, q_summary, _read4(ksum_ref, b, j))
  m, l, acc, n = _loop_visible(qrange_ref, b, i, may_see, visit, init)
  seen = l > 0
  o_ref[...] = (acc / jnp.where(seen, l, 1.0)).astype(o_ref.dtype)
  lse_ref[...] = jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), 0.0)
  visits_ref[...] = jnp.full(visits_ref.shape, n, jnp.int32)


def _forward(cfg: _Cfg, q, k, v, qseg, qidx, kseg, kidx):
  b, n, t, h = q.shape
  s = k.shape[2]
  nq = t // cfg.bq
  qsum, ksum, qrange, _ = _tables(cfg, qseg, qidx, kseg, kidx)
  g = cfg.groups
  q_block = pl.BlockSpec((None, None, cfg.bq, h), lambda b, h, i: (b, h, i, 0))
  kv_full = pl.BlockSpec((None, None, s, h), lambda b, h, i: (b, jax.lax.div(h, g), 0, 0))
  col_block = pl.BlockSpec((None, cfg.bq, 1), lambda b, h, i: (b, i, 0))
  row_full = pl.BlockSpec((None, 1, s), lambda b, h, i: (b, 0, 0))
  stat_block = pl.BlockSpec((None, None, cfg.bq, 1), lambda b, h, i: (b, h, i, 0))
  tab = _backend.table_spec(cfg.backend)
  out, lse, visits = pl.pallas_call(
    functools.partial(_fwd_kernel, cfg=cfg),
    grid=(b, n, nq),
    in_specs=[
      tab,
      tab,
      tab,
      q_block,
      kv_full,
      kv_full,
      col_block,
      col_block,
      row_full,
      row_full,
    ],
    out_specs=[q_block, stat_block, stat_block],
    out_shape=[
      jax.ShapeDtypeStruct(q.shape, q.dtype),
      jax.ShapeDtypeStruct((b, n, t, 1), jnp.float32),
      jax.ShapeDtypeStruct((b, n, t, 1), jnp.int32),
    ],
    name="flash_attention_fwd",
    **_backend.call_kwargs(cfg.backend),
  )(qsum, ksum, qrange, q, k, v, qseg[..., None], qidx[..., None], kseg[:, None], kidx[:, None])
  return out, lse, visits[:, :, :: cfg.bq, 0]


# --- backward kernels --------------------------------------------------------


def _probs_and_grads(x, y, dx, dy, ok, lse, delta):
  """A block's recomputed probabilities p = exp(x y^T - lse) (where `ok`) and score
  gradients ds = p * (dx dy^T - delta). (x, y, dx, dy) = (q, k, do, v) gives the
  query-major block of the dq kernel, (k, q, v, do) its transpose for the dk/dv kernel."""
  p = jnp.where(ok, jnp.exp(_dot_t(x, y) - lse), 0.0)
  return p, p * (_dot_t(dx, dy) - delta)


def _dq_kernel(
  qsum_ref,
  ksum_ref,
  qrange_ref,
  q_ref,
  k_ref,
  v_ref,
  do_ref,
  lse_ref,
  delta_ref,
  qseg_ref,
  qidx_ref,
  kseg_ref,
  kidx_ref,
  dq_ref,
  *,
  cfg: _Cfg,
):
  b, i = pl.program_id(0), pl.program_id(2)
  bk = cfg.bk
  q = q_ref[...]
  q = (q * jnp.asarray(cfg.scale, q.dtype)).astype(q.dtype)
  do, lse, delta = do_ref[...], lse_ref[...], delta_ref[...]
  qs, qi = qseg_ref[...], qidx_ref[...]
  q_summary = _read4(qsum_ref, b, i)

  def visit(j, dq):
    keys = pl.ds(pl.multiple_of(j * bk, bk), bk)
    k, v = k_ref[keys, :], v_ref[keys, :]
    ok = _mask_block(cfg, qs, qi, kseg_ref[:, keys], kidx_ref[:, keys])
    _, ds = _probs_and_grads(q, k, do, v, ok, lse, delta)
    return dq + _dot(ds.astype(k.dtype), k)

  may_see = lambda j: _may_see(cfg, q_summary, _read4(ksum_ref, b, j))
  dq = _loop_visible(qrange_ref, b, i, may_see, visit, jnp.zeros(dq_ref.shape, jnp.float32))
  dq_ref[...] = (dq * cfg.scale).astype(dq_ref.dtype)


def _dkv_kernel(
  qsum_ref,
  ksum_ref,
  krange_ref,
  q_ref,
  k_ref,
  v_ref,
  do_ref,
  lse_ref,
  delta_ref,
  qseg_ref,
  qidx_ref,
  kseg_ref,
  kidx_ref,
  dk_ref,
  dv_ref,
  *,
  cfg: _Cfg,
):
  # Transposed orientation (keys x queries): per-query statistics and ids are
  # rows here, so every product is a plain or an a @ b.T matmul.
  b, j = pl.program_id(0), pl.program_id(2)
  bq = cfg.bq
  k, v = k_ref[...], v_ref[...]
  ks, ki = kseg_ref[...], kidx_ref[...]  # bk x 1
  k_summary = _read4(ksum_ref, b, j)
  scale = jnp.asarray(cfg.scale, q_ref.dtype)

  def visit(i, carry):
    dk, dv = carry
    rows = pl.ds(pl.multiple_of(i * bq, bq), bq)
    q = (q_ref[rows, :] * scale).astype(q_ref.dtype)
    do = do_ref[rows, :]
    ok = _mask_block(cfg, qseg_ref[:, rows], qidx_ref[:, rows], ks, ki)  # bk x bq
    lse, delta = lse_ref[:, rows], delta_ref[:, rows]
    p_t, ds_t = _probs_and_grads(k, q, v, do, ok, lse, delta)
    return dk + _dot(ds_t.astype(q.dtype), q), dv + _dot(p_t.astype(do.dtype), do)

  may_see = lambda i: _may_see(cfg, _read4(qsum_ref, b, i), k_summary)
  zeros = jnp.zeros(dk_ref.shape, jnp.float32)
  dk, dv = _loop_visible(krange_ref, b, j, may_see, visit, (zeros, zeros))
  dk_ref[...] = dk
  dv_ref[...] = dv


def _backward(cfg: _Cfg, q, k, v, qseg, qidx, kseg, kidx, o, lse, do):
  b, n, t, h = q.shape
  kvh, s = k.shape[1], k.shape[2]
  nq, nk = t // cfg.bq, s // cfg.bk
  g = cfg.groups
  qsum, ksum, qrange, krange = _tables(cfg, qseg, qidx, kseg, kidx)
  delta = jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1, keepdims=True)
  tab = _backend.table_spec(cfg.backend)
  kw = _backend.call_kwargs(cfg.backend)
  bq, bk = cfg.bq, cfg.bk

  # dq: one program per query block, looping over the key blocks it sees.
  q_block = pl.BlockSpec((None, None, bq, h), lambda b, h, i: (b, h, i, 0))
  stat_col = pl.BlockSpec((None, None, bq, 1), lambda b, h, i: (b, h, i, 0))
  kv_full = pl.BlockSpec((None, None, s, h), lambda b, h, i: (b, jax.lax.div(h, g), 0, 0))
  q_col = pl.BlockSpec((None, bq, 1), lambda b, h, i: (b, i, 0))
  k_row = pl.BlockSpec((None, 1, s), lambda b, h, i: (b, 0, 0))
  dq = pl.pallas_call(
    functools.partial(_dq_kernel, cfg=cfg),
    grid=(b, n, nq),
    in_specs=[tab, tab, tab, q_block, kv_full, kv_full, q_block, stat_col, stat_col]
    + [q_col, q_col, k_row, k_row],
    out_specs=q_block,
    out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
    name="flash_attention_dq",
    **kw,
  )(
    qsum,
    ksum,
    qrange,
    q,
    k,
    v,
    do,
    lse,
    delta,
    qseg[..., None],
    qidx[..., None],
    kseg[:, None],
    kidx[:, None],
  )

  # dk, dv: one program per (query head, key block), looping over the query
  # blocks that see it; summed over each GQA group below. (T, 1) columns and
  # (1, T) rows are the same memory, so the row views below are reshapes.
  k_block = pl.BlockSpec((None, None, bk, h), lambda b, h, j: (b, jax.lax.div(h, g), j, 0))
  dkv_block = pl.BlockSpec((None, None, bk, h), lambda b, h, j: (b, h, j, 0))
  q_full = pl.BlockSpec((None, None, t, h), lambda b, h, j: (b, h, 0, 0))
  stat_row = pl.BlockSpec((None, None, 1, t), lambda b, h, j: (b, h, 0, 0))
  q_row = pl.BlockSpec((None, 1, t), lambda b, h, j: (b, 0, 0))
  k_col = pl.BlockSpec((None, bk, 1), lambda b, h, j: (b, j, 0))
  dk, dv = pl.pallas_call(
    functools.partial(_dkv_kernel, cfg=cfg),
    grid=(b, n, nk),
    in_specs=[tab, tab, tab, q_full, k_block, k_block, q_full, stat_row, stat_row]
    + [q_row, q_row, k_col, k_col],
    out_specs=[dkv_block, dkv_block],
    out_shape=[jax.ShapeDtypeStruct((b, n, s, h), jnp.float32)] * 2,
    name="flash_attention_dkv",
    **kw,
  )(
    qsum,
    ksum,
    krange,
    q,
    k,
    v,
    do,
    lse.reshape(b, n, 1, t),
    delta.reshape(b, n, 1, t),
    qseg[:, None],
    qidx[:, None],
    kseg[..., None],
    kidx[..., None],
  )
  group_sum = lambda x, like: x.reshape(b, kvh, g, s, h).sum(2).astype(like.dtype)
  return dq, group_sum(dk, k), group_sum(dv, v)


# --- custom VJP --------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(cfg: _Cfg, q, k, v, qseg, qidx, kseg, kidx):
  out, _, visits = _forward(cfg, q, k, v, qseg, qidx, kseg, kidx)
  return out, visits


def _flash_fwd(cfg, q, k, v, qseg, qidx, kseg, kidx):
  out, lse, visits = _forward(cfg, q, k, v, qseg, qidx, kseg, kidx)
  return (out, visits), (q, k, v, qseg, qidx, kseg, kidx, out, lse)


def _flash_bwd(cfg, res, cotangents):
  q, k, v, qseg, qidx, kseg, kidx, out, lse = res
  do, _ = cotangents
  dq, dk, dv = _backward(cfg, q, k, v, qseg, qidx, kseg, kidx, out, lse, do)
  return dq, dk, dv, None, None, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)
