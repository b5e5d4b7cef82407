"""Decoder-only transformer (Llama family) in Flax NNX.

Used as the byte LM / BLT entropy model (vocab 260), as the token-level baseline
(any vocab) and as the container for converted pretrained Llama-style models.
Pre-norm RMSNorm blocks, RoPE, SwiGLU, grouped-query attention, causal +
document + optional sliding-window masks, optional KV cache for decoding.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxtok.configlib import Section
from jaxtok.nn import attention as attn_lib
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
  mlp_dim: int | None = None  # None: Llama sizing from d_model
  rope_theta: float = 10000.0
  rope_layout: str = "interleaved"  # "interleaved" (GPT-J/BLT/GGUF) or "half" (HF Llama)
  sliding_window: int | None = None  # keys further back than this are masked
  norm_eps: float = 1e-5
  tie_embeddings: bool = False
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"
  attention_impl: str = "xla"
  remat: bool = False  # rematerialise each block in the backward pass

  section: ClassVar[str] = "model"
  ignored: ClassVar[frozenset[str]] = frozenset({"name"})  # the task's name

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
      self.sliding_window is None or self.sliding_window > 0,
      "sliding_window",
      "must be positive or None",
    )
    need(self.dtype in DTYPES, "dtype", f"one of {sorted(DTYPES)}")
    need(self.param_dtype in DTYPES, "param_dtype", f"one of {sorted(DTYPES)}")
    need(self.attention_impl in attn_lib.IMPLS, "attention_impl", f"one of {attn_lib.IMPLS}")

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


class Attention(nnx.Module):
  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    d, n, kv, h = cfg.d_model, cfg.n_heads, cfg.num_kv_heads, cfg.head_size
    kw = dict(rngs=rngs, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype])
    self.wq = Linear(d, n * h, ("embed", "heads"), **kw)
    self.wk = Linear(d, kv * h, ("embed", "kv_heads"), **kw)
    self.wv = Linear(d, kv * h, ("embed", "kv_heads"), **kw)
    out_std = (n * h) ** -0.5 / (2 * cfg.n_layers) ** 0.5  # residual-branch scaling
    self.wo = Linear(n * h, d, ("heads", "embed"), init=nnx.initializers.normal(out_std), **kw)
    self.cfg = cfg

  def qkv(self, x_BxTxD, positions_BxT):
    cfg = self.cfg
    b, t, _ = x_BxTxD.shape
    q = self.wq(x_BxTxD).reshape(b, t, cfg.n_heads, cfg.head_size)
    k = self.wk(x_BxTxD).reshape(b, t, cfg.num_kv_heads, cfg.head_size)
    v = self.wv(x_BxTxD).reshape(b, t, cfg.num_kv_heads, cfg.head_size)
    rope = dict(theta=cfg.rope_theta, layout=cfg.rope_layout)
    return apply_rope(q, positions_BxT, **rope), apply_rope(k, positions_BxT, **rope), v

  def __call__(self, x_BxTxD, positions_BxT, mask: attn_lib.Mask):
    q, k, v = self.qkv(x_BxTxD, positions_BxT)
    out = attn_lib.attention(q, k, v, mask, impl=self.cfg.attention_impl)
    return self.wo(out.reshape(*x_BxTxD.shape[:2], -1))


class Block(nnx.Module):
  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    kw = dict(rngs=rngs, param_dtype=DTYPES[cfg.param_dtype])
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

  def decode(self, x, positions, mask, k_cache, v_cache, end):
    """One decoding chunk: writes this chunk's k/v at `end`, attends to the cache."""
    q, k, v = self.attn.qkv(self.attn_norm(x), positions)
    k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, k.astype(k_cache.dtype), end, axis=1)
    v_cache = jax.lax.dynamic_update_slice_in_dim(v_cache, v.astype(v_cache.dtype), end, axis=1)
    out = attn_lib.attention(q, k_cache, v_cache, mask, impl=self.attn.cfg.attention_impl)
    x = x + self.attn.wo(out.reshape(*x.shape[:2], -1))
    return x + self.mlp(self.mlp_norm(x)), k_cache, v_cache


class Transformer(nnx.Module):
  """tokens (or embeddings) -> logits over `vocab_size`."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    cfg.validate()
    self.cfg = cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    self.embed = Embed(cfg.vocab_size, cfg.d_model, rngs=rngs, dtype=dtype, param_dtype=pdtype)
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
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
    mask = self.mask(segment_ids)
    for block in self.blocks:
      if self.cfg.remat:
        x_BxTxD = nnx.remat(lambda blk, x: blk(x, positions, mask))(block, x_BxTxD)
      else:
        x_BxTxD = block(x_BxTxD, positions, mask)
    return self.final_norm(x_BxTxD)

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
    cfg = self.cfg
    shape = (cfg.n_layers, batch, max_len, cfg.num_kv_heads, cfg.head_size)
    dtype = dtype or DTYPES[cfg.dtype]
    return KVCache(
      k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype), end=jnp.zeros((), jnp.int32)
    )

  def decode(self, tokens_BxT: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
    """Logits for `tokens_BxT` continuing the cached prefix; O(cache) work per token.

    All rows share one position (no documents inside a cache): a prompt is fed
    as one chunk, then one token per call.
    """
    b, t = tokens_BxT.shape
    s = cache.k.shape[2]
    idx = cache.end + jnp.arange(t, dtype=jnp.int32)
    positions = jnp.broadcast_to(idx, (b, t))
    kv_idx = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    mask = attn_lib.Mask(
      kv_segment_ids=(kv_idx < cache.end + t).astype(jnp.int32),
      q_idx=positions,
      kv_idx=kv_idx,
      causal=True,
      window=self.cfg.sliding_window,
    )
    x = self.embed(tokens_BxT)
    ks, vs = [], []
    for i, block in enumerate(self.blocks):
      x, k, v = block.decode(x, positions, mask, cache.k[i], cache.v[i], cache.end)
      ks.append(k)
      vs.append(v)
    logits = self.logits(self.final_norm(x))
    return logits, KVCache(k=jnp.stack(ks), v=jnp.stack(vs), end=cache.end + t)
