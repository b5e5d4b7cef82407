"""Decoder-only transformer (Llama family) in Flax NNX.

Used as the byte LM / BLT entropy model (vocab 260), as the token-level baseline
(any vocab) and as the container for converted pretrained Llama-style models.
Pre-norm RMSNorm blocks, RoPE, SwiGLU, grouped-query attention, causal +
document + optional sliding-window masks, optional KV cache for decoding.
The blocks are one stacked module (parameters [L, ...], `jaxtok.nn.stack`) run
by a scan, or by a Python loop with `scan_layers=False`; the functions after
`Block` run such stacks for every model here (BLT and hypernetwork included).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxtok.configlib import Section
from jaxtok.nn import attention as attn_lib
from jaxtok.nn import stack
from jaxtok.nn.layers import Embed, Linear, RMSNorm, SwiGLU, mlp_hidden_dim
from jaxtok.nn.rope import apply_rope
from jaxtok.sharding import constrain

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig(Section):
  vocab_size: int = 260
  d_model: int = 256
  n_layers: int = 4
  n_heads: int = 4
  n_kv_heads: int | None = None  # None: = n_heads (plain multi-head attention)
  head_dim: int | None = None  # None: d_model // n_heads
  qkv_bias: bool = False  # biases on the query/key/value projections (Qwen2)
  mlp_dim: int | None = None  # None: Llama sizing from d_model
  rope_theta: float = 10000.0
  rope_layout: str = "interleaved"  # "interleaved" (GPT-J/BLT/GGUF) or "half" (HF Llama)
  # Llama 3.1 RoPE scaling: (factor, low_freq_factor, high_freq_factor, original context)
  rope_scaling: tuple | None = None  # 4 floats (a plain `tuple`: config placeholders need a type)
  sliding_window: int | None = None  # keys further back than this are masked
  norm_eps: float = 1e-5
  tie_embeddings: bool = False
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"
  attention_impl: str = "xla"
  scan_layers: bool = True  # False: a Python loop over the same stacked layers (unrolled)
  remat: str = "none"  # rematerialisation policy of a layer, one of stack.REMAT_POLICIES

  section: ClassVar[str] = "model"
  ignored: ClassVar[frozenset[str]] = frozenset({"name"})  # the task's name

  @classmethod
  def from_dict(cls, d, **overrides) -> TransformerConfig:
    d = dict(d)
    if d.get("rope_scaling") is not None:  # JSON gives a list; configs are hashed
      d["rope_scaling"] = tuple(float(v) for v in d["rope_scaling"])
    return super().from_dict(d, **overrides)

  def validate(self) -> None:
    need = self.need

    need(self.vocab_size > 0, "vocab_size", "must be positive")
    need(self.d_model > 0, "d_model", "must be positive")
    need(self.n_layers > 0, "n_layers", "must be positive")
    need(self.n_heads > 0, "n_heads", "must be positive")
    need(
      self.head_dim is not None or self.d_model % self.n_heads == 0,
      "n_heads",
      f"must divide d_model={self.d_model} (or set head_dim)",
    )
    need(
      self.num_kv_heads > 0 and self.n_heads % self.num_kv_heads == 0,
      "n_kv_heads",
      f"must divide n_heads={self.n_heads}",
    )
    need(self.head_size % 2 == 0, "head_dim", "must be even for RoPE")
    need(self.rope_layout in ("interleaved", "half"), "rope_layout", "'interleaved' or 'half'")
    need(
      self.rope_scaling is None or len(self.rope_scaling) == 4,
      "rope_scaling",
      "None or (factor, low_freq_factor, high_freq_factor, original context)",
    )
    need(
      self.sliding_window is None or self.sliding_window > 0,
      "sliding_window",
      "must be positive or None",
    )
    need(self.dtype in DTYPES, "dtype", f"one of {sorted(DTYPES)}")
    need(self.param_dtype in DTYPES, "param_dtype", f"one of {sorted(DTYPES)}")
    need(self.attention_impl in attn_lib.IMPLS, "attention_impl", f"one of {attn_lib.IMPLS}")
    need(self.remat in stack.REMAT_POLICIES, "remat", f"one of {sorted(stack.REMAT_POLICIES)}")

  @property
  def num_kv_heads(self) -> int:
    return self.n_kv_heads or self.n_heads

  @property
  def head_size(self) -> int:
    return self.head_dim or self.d_model // self.n_heads

  @property
  def hidden_dim(self) -> int:
    return self.mlp_dim or mlp_hidden_dim(self.d_model)


@struct.dataclass
class KVCache:
  """Keys/values of every layer for decoding; slots are columns.

  `end` is the next column to write: a scalar when every row writes the same
  column (prompts left-padded to one length), or [B] when each row has its own
  (the BLT latent's patches). Row b starts at column `start[b]`: the columns
  before it (its left padding) are never seen, and its positions are column - start.
  """

  k: jax.Array  # L x B x K x S x H  (layouts in which a decode step's products read the
  v: jax.Array  # L x B x K x H x S   cache as it is: no transposed copy per step)
  end: jax.Array  # int32 scalar or [B]
  start: jax.Array  # B int32

  def append(self, k_LxBxTxKxH, v_LxBxTxKxH, advance_B=None) -> KVCache:
    """A chunk's keys/values written at `end`, in place; `end` moves past them, or, with
    `advance_B`, only in those rows (the others' write is garbage beyond their end)."""
    k, v = _write(self.k, self.v, k_LxBxTxKxH, v_LxBxTxKxH, self.end)
    t = k_LxBxTxKxH.shape[2]
    step = t if advance_B is None else t * advance_B.astype(jnp.int32)
    return self.replace(k=k, v=v, end=self.end + step)


@struct.dataclass
class RingCache:
  """K/V of the last S columns of every layer (a sliding window); slot s holds column pos[s].

  Column t goes to slot t % S; -1 marks an empty slot. Row b starts at column
  `start[b]` (left padding before it is never seen); its positions are column - start.
  """

  k: jax.Array  # L x B x K x S x H (the layouts of KVCache)
  v: jax.Array  # L x B x K x H x S
  pos: jax.Array  # S int32
  start: jax.Array  # B int32

  def masks(self, t, batch: int, window: int | None):
    """(slot of column t, positions [B, 1], what t sees of the cache, and of itself).

    The slot's old column is left out: column t replaces it (after the step)."""
    s = self.pos.shape[0]
    slot = t % s
    kv_idx = jnp.broadcast_to(self.pos, (batch, s))
    seen = (kv_idx >= self.start[:, None]) & (jnp.arange(s) != slot)
    q_idx = jnp.full((batch, 1), t, jnp.int32)
    cache_mask = attn_lib.Mask(
      kv_segment_ids=seen.astype(jnp.int32), q_idx=q_idx, kv_idx=kv_idx, causal=True, window=window
    )
    return slot, _positions(t, self.start, 1), cache_mask, _own_mask(q_idx, self.start, window)

  def write(self, t, k_LxBx1xKxH, v_LxBx1xKxH) -> RingCache:
    """Column t's keys/values in its slot, in place."""
    slot = t % self.pos.shape[0]
    k, v = _write(self.k, self.v, k_LxBx1xKxH, v_LxBx1xKxH, slot)
    return self.replace(k=k, v=v, pos=self.pos.at[slot].set(t))


def _own_mask(cols_BxT, start_B, window) -> attn_lib.Mask:
  """What a chunk of new columns sees of itself: causal, window, nothing before the row."""
  return attn_lib.Mask(
    kv_segment_ids=(cols_BxT >= start_B[:, None]).astype(jnp.int32),
    q_idx=cols_BxT,
    kv_idx=cols_BxT,
    causal=True,
    window=window,
  )


def _positions(first_col, start_B, t: int) -> jax.Array:
  """[B, t] positions of columns first_col .. first_col + t - 1 (0 on left padding)."""
  cols = jnp.reshape(first_col, (-1, 1)) + jnp.arange(t, dtype=jnp.int32)
  return jnp.maximum(cols - start_B[:, None], 0)


def _keys(x_LxBxTxKxH):
  return jnp.swapaxes(x_LxBxTxKxH, 2, 3)  # L x B x K x T x H


def _values(x_LxBxTxKxH):
  return jnp.transpose(x_LxBxTxKxH, (0, 1, 3, 4, 2))  # L x B x K x H x T


def _write(k_cache, v_cache, k_LxBxTxKxH, v_LxBxTxKxH, at):
  """Writes every layer's chunk at slot `at` (a scalar: every row; [B]: one per row), in place."""
  k, v = _keys(k_LxBxTxKxH).astype(k_cache.dtype), _values(v_LxBxTxKxH).astype(v_cache.dtype)
  if jnp.ndim(at) == 0:
    k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, k, at, axis=3)
    return k_cache, jax.lax.dynamic_update_slice_in_dim(v_cache, v, at, axis=4)
  # One scatter per column of the chunk; indices on the batch and slot axes only, so the
  # caches are updated where they lie (a vmap over rows would move the batch axis first).
  rows = jnp.arange(at.shape[0])
  for j in range(k.shape[3]):
    k_cache = k_cache.at[:, rows, :, at + j].set(jnp.moveaxis(k[:, :, :, j], 1, 0))
    v_cache = v_cache.at[:, rows, :, :, at + j].set(jnp.moveaxis(v[..., j], 1, 0))
  return k_cache, v_cache


def _cache_shapes(cfg: TransformerConfig, batch: int, size: int):
  """(keys, values) shapes: L x B x K x S x H and L x B x K x H x S."""
  lbk = (cfg.n_layers, batch, cfg.num_kv_heads)
  return lbk + (size, cfg.head_size), lbk + (cfg.head_size, size)


def residual_stream(x_BxTxD, length: str = "seq"):
  """The residual stream pinned at a block boundary: rows over the batch axes, whole rows."""
  return constrain(x_BxTxD, ("batch", length, "embed"))


class Attention(nnx.Module):
  """Self-attention; `length` names the sequence axis ("seq", or a BLT latent's "patches")."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs, length: str = "seq"):
    d, n, kv, h = cfg.d_model, cfg.n_heads, cfg.num_kv_heads, cfg.head_size
    kw = dict(rngs=rngs, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype])
    b = cfg.qkv_bias
    self.wq = Linear(d, n * h, ("embed", "heads"), bias=b, **kw)
    self.wk = Linear(d, kv * h, ("embed", "kv_heads"), bias=b, **kw)
    self.wv = Linear(d, kv * h, ("embed", "kv_heads"), bias=b, **kw)
    out_std = (n * h) ** -0.5 / (2 * cfg.n_layers) ** 0.5  # residual-branch scaling
    self.wo = Linear(n * h, d, ("heads", "embed"), init=nnx.initializers.normal(out_std), **kw)
    self.cfg, self.length = cfg, length

  def qkv(self, x_BxTxD, positions_BxT):
    cfg = self.cfg
    b, t, _ = x_BxTxD.shape
    q = self.wq(x_BxTxD).reshape(b, t, cfg.n_heads, cfg.head_size)
    k = self.wk(x_BxTxD).reshape(b, t, cfg.num_kv_heads, cfg.head_size)
    v = self.wv(x_BxTxD).reshape(b, t, cfg.num_kv_heads, cfg.head_size)
    rope = dict(theta=cfg.rope_theta, layout=cfg.rope_layout, scaling=cfg.rope_scaling)
    q, k = apply_rope(q, positions_BxT, **rope), apply_rope(k, positions_BxT, **rope)
    return self.heads(q), self.heads(k, "kv_heads"), self.heads(v, "kv_heads")

  def heads(self, x_BxTxNxH, name: str = "heads"):
    return constrain(x_BxTxNxH, ("batch", self.length, name, "head_dim"))

  def __call__(self, x_BxTxD, positions_BxT, mask: attn_lib.Mask):
    q, k, v = self.qkv(x_BxTxD, positions_BxT)
    out = self.heads(attn_lib.attention(q, k, v, mask, impl=self.cfg.attention_impl))
    return self.wo(out.reshape(*x_BxTxD.shape[:2], -1))


class Block(nnx.Module):
  """One pre-norm layer. Models hold stacks of them (`make_blocks`) run by the functions below.

  `length` names the sequence axis for the activations' sharding (`constrain`)."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs, length: str = "seq"):
    kw = dict(rngs=rngs, param_dtype=DTYPES[cfg.param_dtype])
    self.cfg, self.length = cfg, length
    self.attn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, **kw)
    self.attn = Attention(cfg, rngs=rngs, length=length)
    self.mlp_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, **kw)
    out_std = cfg.hidden_dim**-0.5 / (2 * cfg.n_layers) ** 0.5  # residual-branch scaling
    self.mlp = SwiGLU(
      cfg.d_model,
      cfg.hidden_dim,
      dtype=DTYPES[cfg.dtype],
      down_init=nnx.initializers.normal(out_std),
      length=length,
      **kw,
    )

  def __call__(self, x, positions, mask):
    x = residual_stream(x + self.attn(self.attn_norm(x), positions, mask), self.length)
    return residual_stream(x + self.mlp(self.mlp_norm(x)), self.length)

  def decode(self, x, positions, cache_mask, own_mask, k_cache, v_cache):
    """A chunk continuing a cached prefix: (x, this chunk's k, v) for the caller to store.

    Attends to the read-only cache and to the chunk itself (`cached_attention`:
    XLA, whatever `attention_impl`; a decode step only reads the cache)."""
    q, k, v = self.attn.qkv(self.attn_norm(x), positions)
    out = attn_lib.cached_attention(q, k_cache, v_cache, cache_mask, k, v, own_mask)
    x = x + self.attn.wo(out.reshape(*x.shape[:2], -1))
    return x + self.mlp(self.mlp_norm(x)), k, v

  def decode_rows(self, x, positions, own_mask, cache: KVCache, layer, rows_B):
    """`decode` on layer `layer` of a cache whose row b holds slots [start[b], end[b]),
    for the rows in rows_B (`ragged_cached_attention`: reads only the slots rows hold)."""
    q, k, v = self.attn.qkv(self.attn_norm(x), positions)
    out = attn_lib.ragged_cached_attention(
      q, cache.k, cache.v, layer, cache.start, cache.end, rows_B, k, v, own_mask
    )
    x = x + self.attn.wo(out.reshape(*x.shape[:2], -1))
    return x + self.mlp(self.mlp_norm(x)), k, v

  def prefill(self, x, positions, mask):
    """`__call__` that also returns this layer's keys and values (to fill a cache)."""
    q, k, v = self.attn.qkv(self.attn_norm(x), positions)
    out = attn_lib.attention(q, k, v, mask, impl=self.cfg.attention_impl)
    x = x + self.attn.wo(out.reshape(*x.shape[:2], -1))
    return x + self.mlp(self.mlp_norm(x)), k, v


def make_blocks(cfg: TransformerConfig, rngs: nnx.Rngs, length: str = "seq") -> Block:
  """`cfg.n_layers` Blocks as one stacked module (parameters [L, ...])."""
  return stack.stack(lambda r: Block(cfg, rngs=r, length=length), cfg.n_layers, rngs)


def apply_blocks(blocks: Block, x_BxTxD, positions_BxT, mask: attn_lib.Mask, *, emit=False):
  """(output, every layer's output [L, B, T, D] if `emit` else None) of a stack of Blocks."""

  def body(block, x, _):
    x = block(x, positions_BxT, mask)
    return x, x if emit else None

  cfg = blocks.cfg
  return stack.run(blocks, body, x_BxTxD, scan=cfg.scan_layers, remat=cfg.remat)


def decode_blocks(
  blocks: Block,
  x_BxTxD,
  positions_BxT,
  cache_mask,
  own_mask,
  k_LxBxKxSxH,
  v_LxBxKxSxH,
  *,
  emit=False,
):
  """(x, the chunk's k, v [L, B, T, K, H], every layer's output or None): one chunk through
  the stack, each layer reading its slice of the caches (left unchanged: callers write k/v)."""

  def body(block, x, i):
    k_i = jax.lax.dynamic_index_in_dim(k_LxBxKxSxH, i, 0, keepdims=False)
    v_i = jax.lax.dynamic_index_in_dim(v_LxBxKxSxH, i, 0, keepdims=False)
    x, k, v = block.decode(x, positions_BxT, cache_mask, own_mask, k_i, v_i)
    return x, (k, v, x if emit else None)

  layers = jnp.arange(k_LxBxKxSxH.shape[0])
  x, (k, v, outs) = stack.run(blocks, body, x_BxTxD, layers, scan=blocks.cfg.scan_layers)
  # The caller's in-place write of k/v must follow every read of the caches: tie k/v to
  # the stack's output (which needs those reads), else XLA may copy a cache to write early.
  return jax.lax.optimization_barrier((x, k, v, outs))


def prefill_blocks(blocks: Block, x_BxTxD, positions_BxT, mask: attn_lib.Mask, *, emit=False):
  """(x, k, v [L, B, T, K, H], every layer's output or None): a whole row, keeping each
  layer's keys and values to fill a cache."""

  def body(block, x, _):
    x, k, v = block.prefill(x, positions_BxT, mask)
    return x, (k, v, x if emit else None)

  x, (k, v, outs) = stack.run(blocks, body, x_BxTxD, scan=blocks.cfg.scan_layers)
  return x, k, v, outs


def attend_cache(blocks: Block, x_BxTxD, cache: KVCache, *, window=None):
  """The stack on a chunk continuing the cached prefix (one document per row), without
  writing it: (x, the chunk's k, v [L, B, T, K, H]) for `KVCache.append`.

  Row b's chunk is columns end .. end + t - 1 (its own `end` when it is [B])."""
  b, t, _ = x_BxTxD.shape
  s = cache.k.shape[3]
  end_Bx1 = jnp.broadcast_to(jnp.reshape(cache.end, (-1, 1)), (b, 1))
  cols = end_Bx1 + jnp.arange(t, dtype=jnp.int32)
  kv_idx = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
  cache_mask = attn_lib.Mask(
    kv_segment_ids=((kv_idx >= cache.start[:, None]) & (kv_idx < end_Bx1)).astype(jnp.int32),
    q_idx=cols,
    kv_idx=kv_idx,
    causal=True,
    window=window,
  )
  own_mask = _own_mask(cols, cache.start, window)
  positions = _positions(cache.end, cache.start, t)
  x, k, v, _ = decode_blocks(blocks, x_BxTxD, positions, cache_mask, own_mask, cache.k, cache.v)
  return x, k, v


def attend_rows(blocks: Block, x_BxTxD, cache: KVCache, rows_B):
  """`attend_cache` for a cache with an `end` per row (no window), computed for the rows in
  rows_B (the others' outputs are garbage): each reads its filled slots only, so the cost
  follows the rows asking and their lengths, not the batch times the capacity."""
  t = x_BxTxD.shape[1]
  cols = cache.end[:, None] + jnp.arange(t, dtype=jnp.int32)
  own_mask = _own_mask(cols, cache.start, None)
  positions = _positions(cache.end, cache.start, t)

  def body(block, x, i):
    x, k, v = block.decode_rows(x, positions, own_mask, cache, i, rows_B)
    return x, (k, v)

  layers = jnp.arange(cache.k.shape[0])
  x, (k, v) = stack.run(blocks, body, x_BxTxD, layers, scan=blocks.cfg.scan_layers)
  return jax.lax.optimization_barrier((x, k, v))  # the caller writes k/v after every read


def decode_with_cache(blocks: Block, x_BxTxD, cache: KVCache, *, window=None):
  """The stack on a chunk continuing the cached prefix, written into the cache: (x, cache)."""
  x, k, v = attend_cache(blocks, x_BxTxD, cache, window=window)
  return x, cache.append(k, v)


def decode_with_ring(blocks: Block, x_Bx1xD, t, cache: RingCache, *, window=None, emit=False):
  """The stack on the one column `t`, ring cache: (x, cache, every layer's output or None)."""
  _, positions, cache_mask, own_mask = cache.masks(t, x_Bx1xD.shape[0], window)
  x, k, v, outs = decode_blocks(
    blocks, x_Bx1xD, positions, cache_mask, own_mask, cache.k, cache.v, emit=emit
  )
  return x, cache.write(t, k, v), outs


def init_kv_cache(cfg: TransformerConfig, batch: int, max_len: int, dtype=None) -> KVCache:
  dtype = dtype or DTYPES[cfg.dtype]
  k, v = (jnp.zeros(shape, dtype) for shape in _cache_shapes(cfg, batch, max_len))
  return KVCache(k, v, jnp.zeros((), jnp.int32), jnp.zeros((batch,), jnp.int32))


def init_ring_cache(cfg: TransformerConfig, batch: int, size: int) -> RingCache:
  k, v = (jnp.zeros(shape, DTYPES[cfg.dtype]) for shape in _cache_shapes(cfg, batch, size))
  return RingCache(k, v, jnp.full((size,), -1, jnp.int32), jnp.zeros((batch,), jnp.int32))


def left_padded(start_B, t: int) -> tuple[jax.Array, jax.Array]:
  """(segment ids, positions) [B, t] of rows whose columns before start[b] are padding."""
  cols = jnp.arange(t, dtype=jnp.int32)
  seg = (cols >= start_B[:, None]).astype(jnp.int32)
  return seg, _positions(0, start_B, t)


def kv_cache_from_prefill(k_LxBxTxKxH, v_LxBxTxKxH, start_B, size: int) -> KVCache:
  """A KV cache of `size` columns holding a prefilled prompt's T columns (end = T)."""
  t = k_LxBxTxKxH.shape[2]
  if t > size:
    raise ValueError(f"a prompt of {t} columns does not fit a cache of max_len={size}")
  k = jnp.pad(_keys(k_LxBxTxKxH), ((0, 0), (0, 0), (0, 0), (0, size - t), (0, 0)))
  v = jnp.pad(_values(v_LxBxTxKxH), ((0, 0), (0, 0), (0, 0), (0, 0), (0, size - t)))
  return KVCache(k, v, jnp.asarray(t, jnp.int32), start_B)


def ring_from_prefill(k_LxBxTxKxH, v_LxBxTxKxH, start_B, size: int) -> RingCache:
  """The ring of `size` slots after a prefilled prompt: its last `size` columns, each in
  slot column % size."""
  t = k_LxBxTxKxH.shape[2]
  slots = np.arange(size)
  cols = slots + size * ((t - 1 - slots) // size)  # latest column c < t with c % size == slot
  cols = np.where(slots < t, cols, -1)
  idx, filled = np.maximum(cols, 0), jnp.asarray(cols >= 0)
  k = jnp.where(filled[:, None], jnp.take(_keys(k_LxBxTxKxH), idx, axis=3), 0)
  v = jnp.where(filled, jnp.take(_values(v_LxBxTxKxH), idx, axis=4), 0)
  return RingCache(
    k.astype(k_LxBxTxKxH.dtype), v.astype(v_LxBxTxKxH.dtype), jnp.asarray(cols, jnp.int32), start_B
  )


class Transformer(nnx.Module):
  """tokens (or embeddings) -> logits over `vocab_size`."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    cfg.validate()
    self.cfg = cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    self.embed = Embed(cfg.vocab_size, cfg.d_model, rngs=rngs, dtype=dtype, param_dtype=pdtype)
    self.blocks = make_blocks(cfg, rngs)
    self.final_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, rngs=rngs, param_dtype=pdtype)
    if not cfg.tie_embeddings:
      self.head = Linear(
        cfg.d_model, cfg.vocab_size, ("embed", "vocab"), rngs=rngs, dtype=dtype, param_dtype=pdtype
      )

  def mask(self, segment_ids_BxT: jax.Array | None) -> attn_lib.Mask:
    return attn_lib.Mask.self_attention(segment_ids_BxT, window=self.cfg.sliding_window)

  def hidden(
    self,
    x_BxTxD: jax.Array,
    *,
    segment_ids: jax.Array | None = None,
    positions: jax.Array | None = None,
  ) -> jax.Array:
    """Runs the blocks on input vectors; returns the final-normed states."""
    b, t, _ = x_BxTxD.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    x_BxTxD = residual_stream(x_BxTxD)
    x_BxTxD, _ = apply_blocks(self.blocks, x_BxTxD, positions, self.mask(segment_ids))
    return self.final_norm(x_BxTxD)

  def embedding_tables(self) -> tuple[jax.Array, jax.Array | None]:
    """(input embeddings [V, D], output embeddings [V, D] or None when they are tied)."""
    emb_out = None if self.cfg.tie_embeddings else self.head.kernel[...].T
    return self.embed.embedding[...], emb_out

  def logits(self, h_BxTxD: jax.Array) -> jax.Array:
    out = self.embed.attend(h_BxTxD) if self.cfg.tie_embeddings else self.head(h_BxTxD)
    return constrain(out.astype(jnp.float32), ("batch",) + ("seq",) * (out.ndim - 2) + ("vocab",))

  def __call__(
    self,
    tokens_BxT: jax.Array | None = None,
    *,
    embeddings: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    positions: jax.Array | None = None,
  ) -> jax.Array:
    """Logits B x T x V. Pass `embeddings` (B x T x D) instead of tokens to feed vectors."""
    if (tokens_BxT is None) == (embeddings is None):
      raise ValueError("pass exactly one of tokens_BxT and embeddings")
    x = self.embed(tokens_BxT) if embeddings is None else embeddings
    return self.logits(self.hidden(x, segment_ids=segment_ids, positions=positions))

  # --- decoding with a KV cache -------------------------------------------------------------

  def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
    return init_kv_cache(self.cfg, batch, max_len, dtype)

  def decode(self, tokens_BxT: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
    """Logits for `tokens_BxT` continuing the cached prefix; O(cache) work per token.

    All rows share one position (no documents inside a cache): a prompt is fed
    as one chunk, then one token per call.
    """
    x, cache = decode_with_cache(
      self.blocks, self.embed(tokens_BxT), cache, window=self.cfg.sliding_window
    )
    return self.logits(self.final_norm(x)), cache

  def prefill(self, tokens_BxT: jax.Array, start_B: jax.Array):
    """A left-padded prompt (row b starts at column start[b]) in one forward.

    Returns (final-normed states [B, T, D], keys, values [L, B, T, K, H]) for
    `kv_cache_from_prefill` or `ring_from_prefill`.
    """
    seg, positions = left_padded(start_B, tokens_BxT.shape[1])
    x, k, v, _ = prefill_blocks(self.blocks, self.embed(tokens_BxT), positions, self.mask(seg))
    return self.final_norm(x), k, v

  def init_ring(self, batch: int, size: int) -> RingCache:
    return init_ring_cache(self.cfg, batch, size)

  def decode_ring(self, tokens_Bx1: jax.Array, t, cache: RingCache) -> tuple[jax.Array, RingCache]:
    """Logits [B, 1, V] of the token at position `t`, with a ring cache of the last S positions."""
    x, cache, _ = decode_with_ring(
      self.blocks, self.embed(tokens_Bx1), t, cache, window=self.cfg.sliding_window
    )
    return self.logits(self.final_norm(x)), cache
