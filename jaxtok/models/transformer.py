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
from flax import nnx, struct

from jaxtok.configlib import Section
from jaxtok.nn import attention as attn_lib
from jaxtok.nn import stack
from jaxtok.nn.layers import Embed, Linear, RMSNorm, SwiGLU, mlp_hidden_dim
from jaxtok.nn.rope import apply_rope

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
  """Keys/values of every layer for decoding; `end` = number of filled slots."""

  k: jax.Array  # L x B x S x K x H
  v: jax.Array  # L x B x S x K x H
  end: jax.Array  # int32 scalar


@struct.dataclass
class RingCache:
  """K/V of the last S positions of every layer (a sliding window); slot s holds position pos[s].

  Position t goes to slot t % S; -1 marks an empty slot.
  """

  k: jax.Array  # L x B x S x K x H
  v: jax.Array
  pos: jax.Array  # S int32

  def advance(self, t, batch: int, window: int | None):
    """(cache with position t in its slot, the slot, positions [B, 1], mask of what t sees)."""
    s = self.pos.shape[0]
    slot = t % s
    pos = self.pos.at[slot].set(t)
    kv_idx = jnp.broadcast_to(pos, (batch, s))
    positions = jnp.full((batch, 1), t, jnp.int32)
    mask = attn_lib.Mask(
      kv_segment_ids=(kv_idx >= 0).astype(jnp.int32),
      q_idx=positions,
      kv_idx=kv_idx,
      causal=True,
      window=window,
    )
    return self.replace(pos=pos), slot, positions, mask


def _cache_shape(cfg: TransformerConfig, batch: int, size: int) -> tuple[int, ...]:
  return (cfg.n_layers, batch, size, cfg.num_kv_heads, cfg.head_size)


class Attention(nnx.Module):
  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    d, n, kv, h = cfg.d_model, cfg.n_heads, cfg.num_kv_heads, cfg.head_size
    kw = dict(rngs=rngs, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype])
    b = cfg.qkv_bias
    self.wq = Linear(d, n * h, ("embed", "heads"), bias=b, **kw)
    self.wk = Linear(d, kv * h, ("embed", "kv_heads"), bias=b, **kw)
    self.wv = Linear(d, kv * h, ("embed", "kv_heads"), bias=b, **kw)
    out_std = (n * h) ** -0.5 / (2 * cfg.n_layers) ** 0.5  # residual-branch scaling
    self.wo = Linear(n * h, d, ("heads", "embed"), init=nnx.initializers.normal(out_std), **kw)
    self.cfg = cfg

  def qkv(self, x_BxTxD, positions_BxT):
    cfg = self.cfg
    b, t, _ = x_BxTxD.shape
    q = self.wq(x_BxTxD).reshape(b, t, cfg.n_heads, cfg.head_size)
    k = self.wk(x_BxTxD).reshape(b, t, cfg.num_kv_heads, cfg.head_size)
    v = self.wv(x_BxTxD).reshape(b, t, cfg.num_kv_heads, cfg.head_size)
    rope = dict(theta=cfg.rope_theta, layout=cfg.rope_layout, scaling=cfg.rope_scaling)
    return apply_rope(q, positions_BxT, **rope), apply_rope(k, positions_BxT, **rope), v

  def __call__(self, x_BxTxD, positions_BxT, mask: attn_lib.Mask):
    q, k, v = self.qkv(x_BxTxD, positions_BxT)
    out = attn_lib.attention(q, k, v, mask, impl=self.cfg.attention_impl)
    return self.wo(out.reshape(*x_BxTxD.shape[:2], -1))


class Block(nnx.Module):
  """One pre-norm layer. Models hold stacks of them (`make_blocks`) run by the functions below."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    kw = dict(rngs=rngs, param_dtype=DTYPES[cfg.param_dtype])
    self.cfg = cfg
    self.attn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, **kw)
    self.attn = Attention(cfg, rngs=rngs)
    self.mlp_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, **kw)
    out_std = cfg.hidden_dim**-0.5 / (2 * cfg.n_layers) ** 0.5  # residual-branch scaling
    self.mlp = SwiGLU(
      cfg.d_model,
      cfg.hidden_dim,
      dtype=DTYPES[cfg.dtype],
      down_init=nnx.initializers.normal(out_std),
      **kw,
    )

  def __call__(self, x, positions, mask):
    x = x + self.attn(self.attn_norm(x), positions, mask)
    return x + self.mlp(self.mlp_norm(x))

  def decode(self, x, positions, mask, k_cache, v_cache, write_at):
    """One decoding chunk: writes this chunk's k/v at slot `write_at`, attends to the cache."""
    q, k, v = self.attn.qkv(self.attn_norm(x), positions)
    k_cache = jax.lax.dynamic_update_slice_in_dim(
      k_cache, k.astype(k_cache.dtype), write_at, axis=1
    )
    v_cache = jax.lax.dynamic_update_slice_in_dim(
      v_cache, v.astype(v_cache.dtype), write_at, axis=1
    )
    out = attn_lib.attention(q, k_cache, v_cache, mask, impl=self.cfg.attention_impl)
    x = x + self.attn.wo(out.reshape(*x.shape[:2], -1))
    return x + self.mlp(self.mlp_norm(x)), k_cache, v_cache


def make_blocks(cfg: TransformerConfig, rngs: nnx.Rngs) -> Block:
  """`cfg.n_layers` Blocks as one stacked module (parameters [L, ...])."""
  return stack.stack(lambda r: Block(cfg, rngs=r), cfg.n_layers, rngs)


def apply_blocks(blocks: Block, x_BxTxD, positions_BxT, mask: attn_lib.Mask, *, emit=False):
  """(output, every layer's output [L, B, T, D] if `emit` else None) of a stack of Blocks."""

  def body(block, x, _):
    x = block(x, positions_BxT, mask)
    return x, x if emit else None

  cfg = blocks.cfg
  return stack.run(blocks, body, x_BxTxD, scan=cfg.scan_layers, remat=cfg.remat)


def decode_blocks(
  blocks: Block, x_BxTxD, positions_BxT, mask, k_LxBxSxKxH, v_LxBxSxKxH, write_at, *, emit=False
):
  """(x, k, v, every layer's output or None): one chunk through the stack and its caches.

  Each layer's cache slice is a scanned input and its update a scanned output.
  """

  def body(block, x, kv):
    x, k, v = block.decode(x, positions_BxT, mask, *kv, write_at)
    return x, (k, v, x if emit else None)

  x, (k, v, outs) = stack.run(
    blocks, body, x_BxTxD, (k_LxBxSxKxH, v_LxBxSxKxH), scan=blocks.cfg.scan_layers
  )
  return x, k, v, outs


def decode_with_cache(blocks: Block, x_BxTxD, cache: KVCache, *, window=None):
  """The stack on a chunk continuing the cached prefix (one document per cache): (x, cache)."""
  b, t, _ = x_BxTxD.shape
  s = cache.k.shape[2]
  positions = jnp.broadcast_to(cache.end + jnp.arange(t, dtype=jnp.int32), (b, t))
  kv_idx = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
  mask = attn_lib.Mask(
    kv_segment_ids=(kv_idx < cache.end + t).astype(jnp.int32),
    q_idx=positions,
    kv_idx=kv_idx,
    causal=True,
    window=window,
  )
  x, k, v, _ = decode_blocks(blocks, x_BxTxD, positions, mask, cache.k, cache.v, cache.end)
  return x, KVCache(k=k, v=v, end=cache.end + t)


def decode_with_ring(blocks: Block, x_Bx1xD, t, cache: RingCache, *, window=None, emit=False):
  """The stack on the one position `t`, ring cache: (x, cache, every layer's output or None)."""
  cache, slot, positions, mask = cache.advance(t, x_Bx1xD.shape[0], window)
  x, k, v, outs = decode_blocks(blocks, x_Bx1xD, positions, mask, cache.k, cache.v, slot, emit=emit)
  return x, cache.replace(k=k, v=v), outs


def init_kv_cache(cfg: TransformerConfig, batch: int, max_len: int, dtype=None) -> KVCache:
  dtype = dtype or DTYPES[cfg.dtype]
  shape = _cache_shape(cfg, batch, max_len)
  return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


def init_ring_cache(cfg: TransformerConfig, batch: int, size: int) -> RingCache:
  shape = _cache_shape(cfg, batch, size)
  dtype = DTYPES[cfg.dtype]
  return RingCache(
    jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.full((size,), -1, jnp.int32)
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
    x_BxTxD, _ = apply_blocks(self.blocks, x_BxTxD, positions, self.mask(segment_ids))
    return self.final_norm(x_BxTxD)

  def embedding_tables(self) -> tuple[jax.Array, jax.Array | None]:
    """(input embeddings [V, D], output embeddings [V, D] or None when they are tied)."""
    emb_out = None if self.cfg.tie_embeddings else self.head.kernel[...].T
    return self.embed.embedding[...], emb_out

  def logits(self, h_BxTxD: jax.Array) -> jax.Array:
    out = self.embed.attend(h_BxTxD) if self.cfg.tie_embeddings else self.head(h_BxTxD)
    return out.astype(jnp.float32)

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

  def init_ring(self, batch: int, size: int) -> RingCache:
    return init_ring_cache(self.cfg, batch, size)

  def decode_ring(self, tokens_Bx1: jax.Array, t, cache: RingCache) -> tuple[jax.Array, RingCache]:
    """Logits [B, 1, V] of the token at position `t`, with a ring cache of the last S positions."""
    x, cache, _ = decode_with_ring(
      self.blocks, self.embed(tokens_Bx1), t, cache, window=self.cfg.sliding_window
    )
    return self.logits(self.final_norm(x)), cache
