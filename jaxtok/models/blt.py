"""Byte Latent Transformer (Pagnoni et al., 2024) in Flax NNX.

bytes --LocalEncoder--> patches --LatentTransformer--> latents --LocalDecoder--> next bytes

* LocalEncoder: byte embeddings + hash n-gram embeddings, byte self-attention
  blocks (causal, document and sliding-window masks), then `cross_attn_k`
  queries per patch (max-pool of the patch's byte states, projected) that
  cross-attend to the bytes of their own patch (equal segment ids), after the
  last block or after every block.
* LatentTransformer: a causal transformer over the [B, P, D] patch sequence
  (document-masked).
* LocalDecoder: the encoder's byte states cross-attend to the `cross_attn_k`
  vectors of one latent (see `patching.layout` for which), then byte
  self-attention blocks, RMSNorm and a head to the 260 byte ids.

Every attention goes through `jaxtok.nn.attention.attention` with a `Mask`
(no dense masks here), so a block-sparse kernel applies to all of them; on the
XLA path the own-patch cross-attentions (window 1) gather instead
(`nn.patch_attention`, `cross_attn_impl`).
Rows that see nothing (empty or padding patches, bytes without a latent yet)
get zeros from `attention`, never NaN.

Deliberate differences from the reference implementation (facebookresearch/blt):
* Patch layouts have a static patch count per row (`max_patches`); in training,
  bytes beyond it are predicted by the local models alone and counted as
  overflow; evaluation (`blt_eval_loss`) has a slot per byte, so nothing overflows.
* Packed rows: the latent's positions restart at each document's first patch.
* Space patching with jaxtok's earlier rule (`patching.space_rule="start"`: a
  space-like byte starts a patch) reads, for byte t, the latent of the patch
  *before its own*: that boundary depends on byte t+1, which the reference
  alignment would leak. The reference rule ("end", the default) and entropy and
  static patches keep the reference alignment (the patch before byte t+1's).
* Hash n-gram windows and patches never cross document boundaries in packed rows.
* No BOE padding tokens; positions 0 and 1 of every document piece start patches
  (so the BOS byte is a patch of its own), whatever the scheme.

Reference-compatible switches (what the released weights were trained with; the
Hugging Face import sets them, `jaxtok.models.reference` lists them all):
* `cross_attn_double_residual`: the reference's cross-attention module returns
  `out + x` and its caller adds `x` again, so each cross-attention computes 2x + O;
  jaxtok's default is the usual residual x + O.
* `latent_final_norm`: jaxtok ends the latent transformer with an RMSNorm; the
  reference has none (the decoder's cross-attention normalises its keys anyway).
* `cross_attn_window_encoder/decoder`: a patch query (encoder) or a byte (decoder)
  sees the bytes / latents of its own patch and the w-1 patches before it, in its
  document; 1 (the default, and the released models') is own-patch attention.
* `ffn_multiple_of`: the SwiGLU width 8d/3 is rounded up to this multiple (reference 256).
* `init`: "jaxtok" (normal σ = fan_in^-1/2, residual outputs scaled by 1/sqrt(2·depth),
  embeddings σ = 1) or "reference" (truncated normal at ±3σ, σ = fan_in^-1/2 for every
  linear layer and d^-1/2 for the byte and hash embeddings).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxtok import patching
from jaxtok.configlib import Section
from jaxtok.data.codec import VOCAB_SIZE
from jaxtok.models.flops import Flops, transformer_flops_per_token, visible_keys
from jaxtok.models.losses import token_ce_sums
from jaxtok.models.transformer import (
  DTYPES,
  KVCache,
  RingCache,
  TransformerConfig,
  apply_blocks,
  attend_rows,
  decode_with_ring,
  init_kv_cache,
  init_ring_cache,
  make_blocks,
  prefill_blocks,
  residual_stream,
)
from jaxtok.nn import attention as attn_lib
from jaxtok.nn import patch_attention, pooling, stack
from jaxtok.nn.layers import Embed, Linear, RMSNorm, mlp_hidden_dim
from jaxtok.sharding import constrain

INITS = ("jaxtok", "reference")
CROSS_IMPLS = ("gather", "mask")


@dataclasses.dataclass(frozen=True)
class BLTConfig(Section):
  d_local: int = 128  # width of the local encoder and decoder
  d_global: int = 256  # width of the latent transformer
  n_layers_encoder: int = 1
  n_layers_global: int = 4
  n_layers_decoder: int = 2
  n_heads_local: int = 4
  n_heads_global: int = 4
  n_kv_heads_global: int | None = None
  mlp_dim_local: int | None = None  # None: Llama sizing
  mlp_dim_global: int | None = None
  local_window: int | None = 512  # sliding window of the byte self-attention
  cross_attn_k: int = 2  # queries per patch (encoder) / vectors per latent (decoder)
  cross_attn_heads: int = 4
  cross_attn_all_layers_encoder: bool = False
  cross_attn_all_layers_decoder: bool = False
  cross_attn_window_encoder: int = 1  # patches a patch query sees: its own and w-1 before
  cross_attn_window_decoder: int = 1  # latents a byte sees: the one it reads and w-1 before
  cross_attn_double_residual: bool = False  # True: 2x + O (reference), False: x + O
  latent_final_norm: bool = True  # RMSNorm after the latent transformer (reference: none)
  ffn_multiple_of: int = 64  # SwiGLU width rounding when mlp_dim_* is None (reference: 256)
  init: str = "jaxtok"  # parameter init: "jaxtok" or "reference" (truncated normal)
  hash_vocab: int = 4096  # buckets per hash table; 0 = no hash n-gram embeddings
  hash_ngram_sizes: tuple[int, ...] = (3, 4, 5, 6, 7, 8)
  hash_functions: int = 1
  rope_theta: float = 10000.0
  norm_eps: float = 1e-5
  dtype: str = "float32"
  param_dtype: str = "float32"
  attention_impl: str = "xla"
  pool_impl: str = "xla"  # patch max-pool: "xla" (segment_max) or "pallas" (kernel)
  # Own-patch cross-attention (window 1, attention_impl "xla"): "gather" (gathers and
  # segment sums, nn.patch_attention) or "mask" (`attention` with a segment mask).
  cross_attn_impl: str = "gather"
  scan_layers: bool = True  # False: Python loops over the same stacked layers (unrolled)
  remat: str = "none"  # rematerialisation policy of each layer, one of stack.REMAT_POLICIES
  # Set from config.patching by the task, not by the model config:
  max_patches: int = 128  # patch slots per row
  lookahead: bool = True  # decoder alignment (see patching.layout)

  section: ClassVar[str] = "model"
  internal: ClassVar[frozenset[str]] = frozenset({"max_patches", "lookahead"})
  ignored: ClassVar[frozenset[str]] = frozenset({"name"})

  @classmethod
  def from_dict(cls, d: Any, **overrides) -> BLTConfig:
    d = dict(d)
    if "hash_ngram_sizes" in d:
      d["hash_ngram_sizes"] = tuple(int(n) for n in d["hash_ngram_sizes"])
    return super().from_dict(d, **overrides)

  def validate(self) -> None:
    need = self.need

    for f in ("d_local", "d_global", "n_layers_global", "n_heads_local", "n_heads_global"):
      need(getattr(self, f) > 0, f, "must be positive")
    need(self.n_layers_encoder >= 1, "n_layers_encoder", "must be >= 1")
    need(self.n_layers_decoder >= 1, "n_layers_decoder", "must be >= 1")
    need(self.d_local % self.n_heads_local == 0, "n_heads_local", "must divide d_local")
    need(self.d_global % self.n_heads_global == 0, "n_heads_global", "must divide d_global")
    need(self.cross_attn_k >= 1, "cross_attn_k", "must be >= 1")
    for f in ("cross_attn_window_encoder", "cross_attn_window_decoder"):
      need(getattr(self, f) >= 1, f, "must be >= 1 (1 = own patch only)")
    need(self.ffn_multiple_of >= 1, "ffn_multiple_of", "must be >= 1")
    need(self.init in INITS, "init", f"one of {INITS}")
    need(self.d_local % self.cross_attn_heads == 0, "cross_attn_heads", "must divide d_local")
    need(self.hash_vocab >= 0, "hash_vocab", "must be >= 0 (0 = no hash embeddings)")
    need(self.hash_functions >= 1, "hash_functions", "must be >= 1")
    need(all(n >= 1 for n in self.hash_ngram_sizes), "hash_ngram_sizes", "sizes must be positive")
    need(self.local_window is None or self.local_window > 0, "local_window", "positive or None")
    need(self.max_patches >= 1, "max_patches", "must be >= 1")
    need(self.dtype in DTYPES, "dtype", f"one of {sorted(DTYPES)}")
    need(self.param_dtype in DTYPES, "param_dtype", f"one of {sorted(DTYPES)}")
    need(self.attention_impl in attn_lib.IMPLS, "attention_impl", f"one of {attn_lib.IMPLS}")
    need(self.pool_impl in pooling.IMPLS, "pool_impl", f"one of {pooling.IMPLS}")
    need(self.cross_attn_impl in CROSS_IMPLS, "cross_attn_impl", f"one of {CROSS_IMPLS}")
    need(self.remat in stack.REMAT_POLICIES, "remat", f"one of {sorted(stack.REMAT_POLICIES)}")
    self.local_config(1).validate()
    self.global_config().validate()

  @property
  def n_hash_tables(self) -> int:
    return len(self.hash_ngram_sizes) * self.hash_functions if self.hash_vocab else 0

  def local_config(self, n_layers: int) -> TransformerConfig:
    return TransformerConfig(
      vocab_size=VOCAB_SIZE,
      d_model=self.d_local,
      n_layers=n_layers,
      n_heads=self.n_heads_local,
      mlp_dim=self.mlp_dim_local or mlp_hidden_dim(self.d_local, self.ffn_multiple_of),
      rope_theta=self.rope_theta,
      sliding_window=self.local_window,
      norm_eps=self.norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_impl=self.attention_impl,
      scan_layers=self.scan_layers,
      remat=self.remat,
    )

  def global_config(self) -> TransformerConfig:
    return TransformerConfig(
      vocab_size=VOCAB_SIZE,  # unused: the latent transformer has no embedding or head
      d_model=self.d_global,
      n_layers=self.n_layers_global,
      n_heads=self.n_heads_global,
      n_kv_heads=self.n_kv_heads_global,
      mlp_dim=self.mlp_dim_global or mlp_hidden_dim(self.d_global, self.ffn_multiple_of),
      rope_theta=self.rope_theta,
      norm_eps=self.norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_impl=self.attention_impl,
      scan_layers=self.scan_layers,
      remat=self.remat,
    )

  @property
  def encoder_cross_layers(self) -> tuple[int, ...]:
    """Encoder layers followed by a cross-attention (the last one, or all)."""
    n = self.n_layers_encoder
    return tuple(range(n)) if self.cross_attn_all_layers_encoder else (n - 1,)

  @property
  def decoder_cross_layers(self) -> tuple[int, ...]:
    """Decoder layers preceded by a cross-attention (the first one, or all)."""
    n = self.n_layers_decoder
    return tuple(range(n)) if self.cross_attn_all_layers_decoder else (0,)


def residual(x, y, double: bool):
  """x + y, or the reference's 2x + y (its cross-attention returns y + x, and the caller adds x)."""
  return (x + x if double else x) + y


@struct.dataclass
class Pieces:
  """Document piece number (1, 2, ... along a row; 0: padding) of every byte and patch slot.

  Windowed cross-attention offsets patch ids by `window * piece`, so that a window of
  patches never reaches into an earlier document of a packed row.
  """

  byte_BxT: jax.Array
  patch_BxP: jax.Array

  @classmethod
  def of(cls, lay: patching.PatchLayout, segment_ids_BxT) -> Pieces:
    valid = segment_ids_BxT > 0
    prev = jnp.pad(segment_ids_BxT[:, :-1], ((0, 0), (1, 0)))
    piece = jnp.cumsum(valid & (segment_ids_BxT != prev), axis=1, dtype=jnp.int32)
    piece = jnp.where(valid, piece, 0)
    b, p = lay.patch_seg_BxP.shape
    slot = jnp.where(lay.enc_seg_BxT > 0, lay.enc_seg_BxT - 1, p)
    rows = jnp.arange(b)[:, None]
    patch = jnp.zeros((b, p), jnp.int32).at[rows, slot].max(piece, mode="drop")
    return cls(byte_BxT=piece, patch_BxP=patch)


def windowed_mask(q_seg, kv_seg, q_piece, kv_piece, window: int) -> attn_lib.Mask:
  """Cross-attention mask: equal patch ids (window 1), or kv patch in [q - window + 1, q]."""
  if window == 1:
    return attn_lib.Mask(q_segment_ids=q_seg, kv_segment_ids=kv_seg, causal=False)
  shift = lambda seg, piece: jnp.where(seg > 0, seg + window * piece, 0)
  return attn_lib.Mask(
    q_segment_ids=shift(q_seg, q_piece),
    kv_segment_ids=shift(kv_seg, kv_piece),
    causal=False,
    segment_window=window,
  )


class CrossAttention(nnx.Module):
  """Queries of one sequence attend to another (RMSNorm on both sides, no RoPE).

  `encoder`: patch queries attend to bytes; else bytes attend to latents (which sequence
  axis is "seq" and which "patches", for the activations' sharding)."""

  def __init__(self, cfg: BLTConfig, *, depth: int, encoder: bool, rngs: nnx.Rngs):
    d, n = cfg.d_local, cfg.cross_attn_heads
    self.n_heads, self.head_dim = n, d // n
    self.q_len, self.kv_len = ("patches", "seq") if encoder else ("seq", "patches")
    kw = dict(rngs=rngs, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype])
    self.q_norm = RMSNorm(d, eps=cfg.norm_eps, rngs=rngs, param_dtype=DTYPES[cfg.param_dtype])
    self.kv_norm = RMSNorm(d, eps=cfg.norm_eps, rngs=rngs, param_dtype=DTYPES[cfg.param_dtype])
    self.wq = Linear(d, d, ("embed", "heads"), **kw)
    self.wk = Linear(d, d, ("embed", "kv_heads"), **kw)
    self.wv = Linear(d, d, ("embed", "kv_heads"), **kw)
    out_std = d**-0.5 / (2 * depth) ** 0.5  # residual-branch scaling
    self.wo = Linear(d, d, ("heads", "embed"), init=nnx.initializers.normal(out_std), **kw)
    self.impl = cfg.attention_impl

  def kv(self, x_BxSxD):
    b, s, _ = x_BxSxD.shape
    x = self.kv_norm(x_BxSxD)
    shape = (b, s, self.n_heads, self.head_dim)
    names = ("batch", self.kv_len, "kv_heads", "head_dim")
    return constrain(self.wk(x).reshape(shape), names), constrain(self.wv(x).reshape(shape), names)

  def attend(self, x_BxTxD, k, v, mask: attn_lib.Mask):
    b, t, _ = x_BxTxD.shape
    heads = lambda a: constrain(a, ("batch", self.q_len, "heads", "head_dim"))
    q = heads(self.wq(self.q_norm(x_BxTxD)).reshape(b, t, self.n_heads, self.head_dim))
    if isinstance(mask, patch_attention.PatchCross):
      out = patch_attention.patch_cross_attention(q, k, v, mask)
    else:
      out = attn_lib.attention(q, k, v, mask, impl=self.impl)
    return self.wo(heads(out).reshape(b, t, -1))

  def __call__(self, x_BxTxD, kv_BxSxD, mask: attn_lib.Mask):
    return self.attend(x_BxTxD, *self.kv(kv_BxSxD), mask)


def patch_cross_mask(
  cfg: BLTConfig, byte_seg, patch_seg, byte_piece, patch_piece, *, encoder: bool
):
  """What a cross-attention sees: its patch window (a `Mask`), or own patch (`PatchCross`)."""
  k = cfg.cross_attn_k
  w = cfg.cross_attn_window_encoder if encoder else cfg.cross_attn_window_decoder
  if w == 1 and cfg.cross_attn_impl == "gather" and cfg.attention_impl == "xla":
    return patch_attention.PatchCross(byte_seg, patch_seg, k, patches_query=encoder)
  slots = jnp.repeat(patch_seg, k, axis=1)
  slot_piece = None if w == 1 else jnp.repeat(patch_piece, k, axis=1)
  if encoder:
    return windowed_mask(slots, byte_seg, slot_piece, byte_piece, w)
  return windowed_mask(byte_seg, slots, byte_piece, slot_piece, w)


def _cross_stack(cfg: BLTConfig, n: int, rngs: nnx.Rngs, *, encoder: bool) -> CrossAttention:
  return stack.stack(lambda r: CrossAttention(cfg, depth=n, encoder=encoder, rngs=r), n, rngs)


class LocalEncoder(nnx.Module):
  """Byte blocks, then patch vectors: pooled queries that cross-attend to their patch's bytes."""

  def __init__(self, cfg: BLTConfig, *, rngs: nnx.Rngs):
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    lcfg = cfg.local_config(cfg.n_layers_encoder)
    self.cfg, self.lcfg = cfg, lcfg
    self.embed = Embed(VOCAB_SIZE, cfg.d_local, rngs=rngs, dtype=dtype, param_dtype=pdtype)
    if cfg.n_hash_tables:
      self.hash_embed = Embed(
        cfg.n_hash_tables * cfg.hash_vocab, cfg.d_local, rngs=rngs, dtype=dtype, param_dtype=pdtype
      )
    self.blocks = make_blocks(lcfg, rngs)
    self.cross = _cross_stack(cfg, len(cfg.encoder_cross_layers), rngs, encoder=True)
    k = cfg.cross_attn_k
    self.pool_proj = Linear(
      cfg.d_local, k * cfg.d_local, ("embed", "mlp"), rngs=rngs, dtype=dtype, param_dtype=pdtype
    )

  def embed_bytes(self, ids_BxT, hash_ids_BxTxK=None):
    """Byte embedding + the sum of the hash n-gram embeddings."""
    x = self.embed(ids_BxT)
    if self.cfg.n_hash_tables:
      if hash_ids_BxTxK is None:
        raise ValueError("this BLT has hash n-gram embeddings: pass hash_ids")
      offsets = self.cfg.hash_vocab * jnp.arange(self.cfg.n_hash_tables, dtype=jnp.int32)
      x = x + jnp.sum(self.hash_embed(hash_ids_BxTxK + offsets), axis=-2)
    return residual_stream(x)

  def _cross_states(self, x_BxTxD, outs_LxBxTxD):
    """C x B x T x D: the byte states each cross-attention reads (every layer's, or the last's)."""
    return outs_LxBxTxD if self.cfg.cross_attn_all_layers_encoder else x_BxTxD[None]

  def __call__(self, x_BxTxD, positions_BxT, self_mask, lay: patching.PatchLayout, pieces=None):
    """(byte states [B, T, D], patch vectors [B, P, k*D]); `pieces` for windowed cross-attention."""
    every = self.cfg.cross_attn_all_layers_encoder
    x_BxTxD, outs = apply_blocks(self.blocks, x_BxTxD, positions_BxT, self_mask, emit=every)
    states = self._cross_states(x_BxTxD, outs)
    return x_BxTxD, self.patch_vectors(states, lay.enc_seg_BxT, lay.patch_seg_BxP, pieces)

  def step(self, x_Bx1xD, t, cache: RingCache):
    """Byte t through the blocks: (its state, its states the cross-attentions read, cache)."""
    every = self.cfg.cross_attn_all_layers_encoder
    x, cache, outs = decode_with_ring(
      self.blocks, x_Bx1xD, t, cache, window=self.lcfg.sliding_window, emit=every
    )
    return x, self._cross_states(x, outs), cache

  def prefill(self, x_BxTxD, positions_BxT, self_mask, lay: patching.PatchLayout):
    """`__call__` that also returns the cross-attended states [C, B, T, D] and every
    layer's keys and values [L, B, T, K, H] (to fill the caches of generation)."""
    x_BxTxD, k, v, outs = prefill_blocks(self.blocks, x_BxTxD, positions_BxT, self_mask, emit=True)
    states = self._cross_states(x_BxTxD, outs)
    patches = self.patch_vectors(states, lay.enc_seg_BxT, lay.patch_seg_BxP)
    return x_BxTxD, states, patches, k, v

  def byte_kv(self, states_CxBxTxD):
    """Keys and values C x B x T x N x H of bytes for every cross-attention that reads them."""

    def body(cross, carry, s_BxTxD):
      return carry, cross.kv(s_BxTxD)

    _, (k, v) = stack.run(self.cross, body, None, states_CxBxTxD, scan=self.cfg.scan_layers)
    return k, v

  def patch_from_kv(self, pooled_BxD, k_CxBxLxNxH, v_CxBxLxNxH, length_B):
    """[B, 1, k*D]: one patch per row from the max-pool of its bytes' states and their keys
    and values (`byte_kv`) in the first `length_B` slots; the math of `patch_vectors`."""
    cfg, k = self.cfg, self.cfg.cross_attn_k
    b, n = k_CxBxLxNxH.shape[1:3]
    q = self.pool_proj(pooled_BxD[:, None]).reshape(b, k, cfg.d_local)
    mask = attn_lib.Mask(
      kv_segment_ids=(jnp.arange(n) < length_B[:, None]).astype(jnp.int32), causal=False
    )

    def body(cross, q, kv):
      return residual(q, cross.attend(q, *kv, mask), cfg.cross_attn_double_residual), None

    q, _ = stack.run(self.cross, body, q, (k_CxBxLxNxH, v_CxBxLxNxH), scan=cfg.scan_layers)
    return q.reshape(b, 1, k * cfg.d_local)

  def patch_vectors(self, states_CxBxTxD, byte_seg_BxT, patch_seg_BxP, pieces=None):
    """[B, P, k*D]: k queries per patch, refined by cross-attention to the bytes of the patch
    (and of the `cross_attn_window_encoder` - 1 patches before it: `pieces` needed).

    byte_seg_BxT: patch index + 1 of each byte (0: in no patch); patch_seg_BxP: j + 1 for
    the slots in use (0: empty). The queries project the max-pool of the patch's byte
    states at the first cross-attended layer.
    """
    cfg, k = self.cfg, self.cfg.cross_attn_k
    b, p = patch_seg_BxP.shape
    pooled_BxPxD = pooling.segment_pool(
      states_CxBxTxD[0], byte_seg_BxT - 1, p, "max", impl=cfg.pool_impl
    )
    q = self.pool_proj(pooled_BxPxD).reshape(b, p * k, cfg.d_local)
    q = residual_stream(q, "patches")
    windowed = cfg.cross_attn_window_encoder > 1
    mask = patch_cross_mask(
      cfg,
      byte_seg_BxT,
      patch_seg_BxP,
      pieces.byte_BxT if windowed else None,
      pieces.patch_BxP if windowed else None,
      encoder=True,
    )

    def body(cross, q, s_BxTxD):
      q = residual(q, cross(q, s_BxTxD, mask), cfg.cross_attn_double_residual)
      return residual_stream(q, "patches"), None

    q, _ = stack.run(self.cross, body, q, states_CxBxTxD, scan=cfg.scan_layers, remat=cfg.remat)
    return q.reshape(b, p, k * cfg.d_local)


class LatentTransformer(nnx.Module):
  """Causal transformer over a [B, P, D] sequence of patch vectors (no embedding, no head)."""

  def __init__(self, cfg: TransformerConfig, *, final_norm: bool = True, rngs: nnx.Rngs):
    self.cfg = cfg
    self.blocks = make_blocks(cfg, rngs, length="patches")
    if final_norm:
      self.final_norm = RMSNorm(
        cfg.d_model, eps=cfg.norm_eps, rngs=rngs, param_dtype=DTYPES[cfg.param_dtype]
      )

  def _norm(self, h):
    return self.final_norm(h) if hasattr(self, "final_norm") else h

  def __call__(self, h_BxPxD, *, segment_ids_BxP=None, positions_BxP=None):
    b, p, _ = h_BxPxD.shape
    if positions_BxP is None:
      positions_BxP = jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (b, p))
    mask = attn_lib.Mask.self_attention(segment_ids_BxP)
    h, _ = apply_blocks(self.blocks, residual_stream(h_BxPxD, "patches"), positions_BxP, mask)
    return self._norm(h)

  def prefill(self, h_BxPxD, *, segment_ids_BxP):
    """`__call__` that also returns every layer's keys and values [L, B, P, K, H]."""
    b, p, _ = h_BxPxD.shape
    positions = jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (b, p))
    mask = attn_lib.Mask.self_attention(segment_ids_BxP)
    h, k, v, _ = prefill_blocks(self.blocks, h_BxPxD, positions, mask)
    return self._norm(h), k, v

  def init_cache(self, batch: int, max_patches: int) -> KVCache:
    """A cache whose rows fill up independently (`end` is [B]: patches close per row)."""
    cache = init_kv_cache(self.cfg, batch, max_patches)
    return cache.replace(end=jnp.zeros((batch,), jnp.int32))

  def step(self, h_Bx1xD, cache: KVCache, rows_B=None):
    """The next patch of every row after its cached ones (one document per row), without
    writing: (latent [B, 1, D], the patch's k, v [L, B, 1, K, H] for `KVCache.append`).

    Only the rows in rows_B (default: all) are computed; the others' outputs are garbage."""
    if rows_B is None:
      rows_B = jnp.ones(cache.end.shape, bool)
    h, k, v = attend_rows(self.blocks, h_Bx1xD, cache, rows_B)
    return self._norm(h), k, v


class LocalDecoder(nnx.Module):
  """Cross-attention to latent vectors (before the first or every block), byte blocks, head."""

  def __init__(self, cfg: BLTConfig, *, rngs: nnx.Rngs):
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    lcfg = cfg.local_config(cfg.n_layers_decoder)
    self.cfg, self.lcfg = cfg, lcfg
    k = cfg.cross_attn_k
    self.latent_proj = Linear(
      cfg.d_global, k * cfg.d_local, ("mlp", "embed"), rngs=rngs, dtype=dtype, param_dtype=pdtype
    )
    self.cross = _cross_stack(cfg, len(cfg.decoder_cross_layers), rngs, encoder=False)
    self.blocks = make_blocks(lcfg, rngs)
    self.norm = RMSNorm(cfg.d_local, eps=cfg.norm_eps, rngs=rngs, param_dtype=pdtype)
    self.head = Linear(
      cfg.d_local, VOCAB_SIZE, ("embed", "vocab"), rngs=rngs, dtype=dtype, param_dtype=pdtype
    )

  def latent_kv(self, g_BxPxDg):
    """Keys and values C x B x P*k x N x H of every cross-attention: k vectors per latent."""
    b, p, _ = g_BxPxDg.shape
    kv_BxSxD = self.latent_proj(g_BxPxDg).reshape(b, p * self.cfg.cross_attn_k, self.cfg.d_local)
    kv_BxSxD = residual_stream(kv_BxSxD, "patches")

    def body(cross, carry, _):
      return carry, cross.kv(kv_BxSxD)

    _, (k, v) = stack.run(self.cross, body, None, scan=self.cfg.scan_layers)
    return k, v

  def _layers(self, x, kv, cross_mask, block_fn, block_xs, *, gate=None, remat="none"):
    """Cross-attention(s) to `kv` and the blocks, in layer order; (x, the blocks' outputs).

    `block_fn(block, x, block_x)` runs one block; `gate` (a bool) zeroes the cross-attention.
    """
    scan, double = self.cfg.scan_layers, self.cfg.cross_attn_double_residual

    def cross_fn(cross, x, kv_c):
      y = cross.attend(x, *kv_c, cross_mask)
      y = y if gate is None else jnp.where(gate, y, 0.0).astype(x.dtype)
      return residual_stream(residual(x, y, double))

    if self.cfg.cross_attn_all_layers_decoder:  # one scan over (cross-attention, block) pairs

      def body(layer, x, xs):
        (cross, block), (kv_c, block_x) = layer, xs
        return block_fn(block, cross_fn(cross, x, kv_c), block_x)

      return stack.run((self.cross, self.blocks), body, x, (kv, block_xs), scan=scan, remat=remat)
    x, _ = stack.run(
      self.cross, lambda c, x, kv_c: (cross_fn(c, x, kv_c), None), x, kv, scan=scan, remat=remat
    )
    return stack.run(self.blocks, block_fn, x, block_xs, scan=scan, remat=remat)

  def __call__(
    self, x_BxTxD, g_BxPxDg, positions_BxT, self_mask, lay: patching.PatchLayout, pieces=None
  ):
    """Logits [B, T, 260]: byte t reads the latent of patch dec_seg_BxT[t] - 1 (and the
    `cross_attn_window_decoder` - 1 latents before it: `pieces` needed)."""
    windowed = self.cfg.cross_attn_window_decoder > 1
    mask = patch_cross_mask(
      self.cfg,
      lay.dec_seg_BxT,
      lay.patch_seg_BxP,
      pieces.byte_BxT if windowed else None,
      pieces.patch_BxP if windowed else None,
      encoder=False,
    )

    def block_fn(block, x, _):
      return block(x, positions_BxT, self_mask), None

    kv = self.latent_kv(g_BxPxDg)
    x_BxTxD, _ = self._layers(x_BxTxD, kv, mask, block_fn, None, remat=self.cfg.remat)
    return self.logits(x_BxTxD)

  def prefill(self, x_BxTxD, g_BxPxDg, positions_BxT, self_mask, lay: patching.PatchLayout):
    """`__call__` that also returns every block's keys and values [L, B, T, K, H]."""
    cross_mask = attn_lib.Mask(
      q_segment_ids=lay.dec_seg_BxT,
      kv_segment_ids=jnp.repeat(lay.patch_seg_BxP, self.cfg.cross_attn_k, axis=1),
      causal=False,
    )

    def block_fn(block, x, _):
      x, k, v = block.prefill(x, positions_BxT, self_mask)
      return x, (k, v)

    kv = self.latent_kv(g_BxPxDg)
    x_BxTxD, (k, v) = self._layers(x_BxTxD, kv, cross_mask, block_fn, None)
    return self.logits(x_BxTxD), k, v

  def step(self, x_Bx1xD, t, kv, has_latent, cache: RingCache):
    """Byte t, reading the latest latent's `kv` (nothing in rows whose `has_latent` is False)."""
    b = x_Bx1xD.shape[0]
    cross_mask = attn_lib.Mask(
      q_segment_ids=jnp.ones((b, 1), jnp.int32),
      kv_segment_ids=jnp.ones((b, kv[0].shape[2]), jnp.int32),
      causal=False,
    )
    _, positions, cache_mask, own_mask = cache.masks(t, b, self.lcfg.sliding_window)

    def block_fn(block, x, i):  # reads layer i's slice of the ring; the ring is written after
      k_i = jax.lax.dynamic_index_in_dim(cache.k, i, 0, keepdims=False)
      v_i = jax.lax.dynamic_index_in_dim(cache.v, i, 0, keepdims=False)
      x, k, v = block.decode(x, positions, cache_mask, own_mask, k_i, v_i)
      return x, (k, v)

    gate = jnp.reshape(has_latent, (-1, 1, 1))  # a scalar or one flag per row
    layers = jnp.arange(cache.k.shape[0])
    x, (k, v) = self._layers(x_Bx1xD, kv, cross_mask, block_fn, layers, gate=gate)
    x, k, v = jax.lax.optimization_barrier((x, k, v))  # write after every read (decode_blocks)
    return self.logits(x), cache.write(t, k, v)

  def logits(self, x_BxTxD):
    return constrain(self.head(self.norm(x_BxTxD)).astype(jnp.float32), ("batch", "seq", "vocab"))


@struct.dataclass
class BLTPrefill:
  """What `BLT.prefill` returns besides the logits: the stages' outputs and caches' contents."""

  logits_BxTxV: jax.Array
  lay: patching.PatchLayout
  states_CxBxTxD: jax.Array  # the encoder's cross-attended byte states
  g_BxPxDg: jax.Array  # latents of every patch slot
  enc_kv: tuple[jax.Array, jax.Array]  # L x B x T x K x H each
  lat_kv: tuple[jax.Array, jax.Array]  # L x B x P x K x H each
  dec_kv: tuple[jax.Array, jax.Array]


class BLT(nnx.Module):
  """bytes (+ hash ids + patch starts) -> next-byte logits [B, T, 260].

  The stages, written once and composed by `forward`, by patch-level training
  (`train.patch_level`) and by generation (`jaxtok.generate`):
    whole rows:  embed -> encode -> latent_states -> decode
    cached, one byte at a time:  embed -> encode_step -> patch_byte_kv, and when a
      patch closes patch_vector -> latent_step (+ KVCache.append) -> decoder_kv; then
      decode_step;
    a prompt at once (filling those caches):  prefill.
  Every stack of layers is scanned (`jaxtok.nn.stack`), or unrolled with `cfg.scan_layers=False`.
  """

  def __init__(self, cfg: BLTConfig, *, rngs: nnx.Rngs):
    cfg.validate()
    self.cfg = cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    self.encoder = LocalEncoder(cfg, rngs=rngs)
    k_width = cfg.cross_attn_k * cfg.d_local
    if k_width != cfg.d_global:  # projection between the local and global widths
      self.to_global = Linear(
        k_width, cfg.d_global, ("mlp", "embed"), rngs=rngs, dtype=dtype, param_dtype=pdtype
      )
    self.latent = LatentTransformer(
      cfg.global_config(), final_norm=cfg.latent_final_norm, rngs=rngs
    )
    self.decoder = LocalDecoder(cfg, rngs=rngs)
    if cfg.init == "reference":
      reference_init(self, rngs)

  def _project(self, patches_BxPxKD):
    h = self.to_global(patches_BxPxKD) if hasattr(self, "to_global") else patches_BxPxKD
    return residual_stream(h, "patches")

  def layout(self, patch_starts_BxN, segment_ids_BxT, max_patches: int | None = None):
    """The patch layout of rows (`max_patches` overrides the configured patch slots)."""
    p = max_patches or self.cfg.max_patches
    return patching.layout(patch_starts_BxN, segment_ids_BxT, p, lookahead=self.cfg.lookahead)

  def local_mask(self, segment_ids_BxT) -> attn_lib.Mask:
    return attn_lib.Mask.self_attention(segment_ids_BxT, window=self.cfg.local_window)

  def _pieces(self, lay, segment_ids_BxT) -> Pieces | None:
    windows = (self.cfg.cross_attn_window_encoder, self.cfg.cross_attn_window_decoder)
    return Pieces.of(lay, segment_ids_BxT) if max(windows) > 1 else None

  # --- stages over whole rows ---

  def embed(self, ids_BxT, hash_ids_BxTxK=None) -> jax.Array:
    """Byte embeddings + hash n-gram embeddings: [B, T, d_local]."""
    return self.encoder.embed_bytes(ids_BxT, hash_ids_BxTxK)

  def encode(self, x_BxTxD, lay, *, segment_ids_BxT, positions_BxT):
    """(byte states [B, T, d_local], patch vectors [B, P, d_global]) of the local encoder."""
    mask, pieces = self.local_mask(segment_ids_BxT), self._pieces(lay, segment_ids_BxT)
    x_BxTxD, patches = self.encoder(x_BxTxD, positions_BxT, mask, lay, pieces)
    return x_BxTxD, self._project(patches)

  def latent_states(self, h_BxPxDg, segment_ids_BxP) -> jax.Array:
    """The latent transformer over patch vectors (documents = segment ids): [B, P, d_global].

    Positions restart at every document's first patch (as in cached generation), so a
    document's latents do not depend on what is packed before it in the row.
    """
    positions_BxP = patching.segment_positions(segment_ids_BxP)
    return self.latent(h_BxPxDg, segment_ids_BxP=segment_ids_BxP, positions_BxP=positions_BxP)

  def decode(self, x_BxTxD, g_BxPxDg, lay, *, segment_ids_BxT, positions_BxT) -> jax.Array:
    """Next-byte logits [B, T, 260] from byte states and latents (`lay` says who reads what)."""
    mask, pieces = self.local_mask(segment_ids_BxT), self._pieces(lay, segment_ids_BxT)
    return self.decoder(x_BxTxD, g_BxPxDg, positions_BxT, mask, lay, pieces)

  # --- single-step stages (one sequence, cached) ---

  def _check_cacheable(self):
    if max(self.cfg.cross_attn_window_encoder, self.cfg.cross_attn_window_decoder) > 1:
      raise NotImplementedError(
        "cached generation reads one patch per cross-attention: with cross_attn_window_encoder/"
        "decoder > 1 use the uncached generator (generate_blt_uncached, --uncached)"
      )

  def init_caches(self, batch: int, ring: int, max_patches: int):
    """(encoder ring cache, latent KV cache, decoder ring cache); rings hold `ring` bytes."""
    self._check_cacheable()
    return (
      init_ring_cache(self.encoder.lcfg, batch, ring),
      self.latent.init_cache(batch, max_patches),
      init_ring_cache(self.decoder.lcfg, batch, ring),
    )

  def encode_step(self, x_Bx1xD, t, cache: RingCache):
    """Byte t through the encoder blocks: (state [B, 1, D], states [C, B, 1, D], cache).

    The C states are what the cross-attentions read: the caller buffers them until
    the patch closes (`encode_patch`).
    """
    return self.encoder.step(x_Bx1xD, t, cache)

  def patch_byte_kv(self, states_CxBxTxD):
    """Cross-attention keys and values (C x B x T x N x H) of bytes' states: what a patch
    keeps of its bytes until it closes (`patch_vector`)."""
    return self.encoder.byte_kv(states_CxBxTxD)

  def patch_vector(self, pooled_BxD, k_CxBxLxNxH, v_CxBxLxNxH, length_B) -> jax.Array:
    """The vector [B, 1, d_global] of each row's patch: `pooled_BxD` is the max of its bytes'
    first cross-attended states, k/v (`patch_byte_kv`) hold its bytes in the first `length_B`."""
    return self._project(self.encoder.patch_from_kv(pooled_BxD, k_CxBxLxNxH, v_CxBxLxNxH, length_B))

  def latent_step(self, h_Bx1xDg, cache: KVCache, rows_B=None):
    """The latent of each row's next patch after its cached ones: ([B, 1, d_global], the
    patch's keys and values, which `cache.append(k, v, closed_B)` stores); rows_B: the rows
    computed (default all; the others' outputs are garbage)."""
    return self.latent.step(h_Bx1xDg, cache, rows_B)

  def decoder_kv(self, g_Bx1xDg):
    """The decoder's cross-attention keys and values of one latent (C x B x k x N x H each)."""
    return self.decoder.latent_kv(g_Bx1xDg)

  def decode_step(self, x_Bx1xD, t, kv, has_latent, cache: RingCache):
    """Logits [B, 1, 260] after byte t, reading the latest latent's `kv` once `has_latent`
    (a flag per row, or one for all)."""
    return self.decoder.step(x_Bx1xD, t, kv, has_latent, cache)

  def prefill(self, ids_BxT, *, patch_starts, hash_ids, segment_ids, positions, max_patches):
    """`forward` over prompts that also returns what the cached steps continue from."""
    self._check_cacheable()
    lay = self.layout(patch_starts, segment_ids, max_patches)
    mask = self.local_mask(segment_ids)
    x = self.embed(ids_BxT, hash_ids)
    x, states, patches, enc_k, enc_v = self.encoder.prefill(x, positions, mask, lay)
    g, lat_k, lat_v = self.latent.prefill(self._project(patches), segment_ids_BxP=lay.doc_BxP)
    logits, dec_k, dec_v = self.decoder.prefill(x, g, positions, mask, lay)
    return BLTPrefill(logits, lay, states, g, (enc_k, enc_v), (lat_k, lat_v), (dec_k, dec_v))

  # --- the whole model ---

  def forward(
    self,
    ids_BxT: jax.Array,
    *,
    patch_starts: jax.Array,
    hash_ids: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    positions: jax.Array | None = None,
    max_patches: int | None = None,
  ) -> tuple[jax.Array, patching.PatchLayout]:
    """(logits [B, T, 260], patch layout).

    `patch_starts` is [B, T+1] (column T: whether the byte after the row starts
    a patch). `max_patches` overrides the configured patch slots (generation
    runs past the training length).
    """
    b, t = ids_BxT.shape
    if segment_ids is None:
      segment_ids = jnp.ones((b, t), jnp.int32)
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    lay = self.layout(patch_starts, segment_ids, max_patches)
    rows = dict(segment_ids_BxT=segment_ids, positions_BxT=positions)
    x, h = self.encode(self.embed(ids_BxT, hash_ids), lay, **rows)
    g = self.latent_states(h, lay.doc_BxP)
    return self.decode(x, g, lay, **rows), lay

  def __call__(self, ids_BxT, **kw) -> jax.Array:
    return self.forward(ids_BxT, **kw)[0]


# --- reference init -----------------------------------------------------------------------------


def reference_init(model: nnx.Module, rngs: nnx.Rngs) -> None:
  """Redraws the parameters of `model` as the BLT reference initialises them.

  Every linear kernel [..., in, out]: truncated normal at ±3σ with σ = in^-1/2 (the
  reference's attention, FFN and projection rules all reduce to the fan-in); embedding
  tables [..., V, d]: the same with σ = d^-1/2; norm scales stay 1.
  """
  for path, var in nnx.iter_graph(model):
    if not isinstance(var, nnx.Param) or not path or path[-1] not in ("kernel", "embedding"):
      continue
    shape = var.shape
    std = (shape[-2] if path[-1] == "kernel" else shape[-1]) ** -0.5
    draw = jax.random.truncated_normal(rngs.params(), -3.0, 3.0, shape, jnp.float32)
    var.set_value((draw * std).astype(var.dtype))


# --- FLOPs --------------------------------------------------------------------------------------


def blt_flops(cfg: BLTConfig, seq_len: int, bytes_per_patch: float) -> Flops:
  """Forward FLOPs per byte, by part ("encoder/...", "global/...", "decoder/...").

  Per-patch work is divided by the mean patch size; attention counts only the
  keys a query can see (the bytes of its window of patches for the encoder
  cross-attention, k vectors per latent in the window for the decoder's, the
  causal window for self-attention).
  """
  d, k, bpp = cfg.d_local, cfg.cross_attn_k, bytes_per_patch
  hd = d // cfg.n_heads_local
  local_mlp = cfg.local_config(1).hidden_dim
  ctx = visible_keys(seq_len, cfg.local_window)

  def local(n_layers, vocab):
    return transformer_flops_per_token(
      d_model=d,
      n_layers=n_layers,
      n_heads=cfg.n_heads_local,
      n_kv_heads=cfg.n_heads_local,
      head_dim=hd,
      mlp_dim=local_mlp,
      vocab_size=vocab,
      context=ctx,
    )

  n_enc_cross = len(cfg.encoder_cross_layers)
  n_dec_cross = cfg.n_layers_decoder if cfg.cross_attn_all_layers_decoder else 1
  enc = local(cfg.n_layers_encoder, None).parts
  enc_cross = {
    # per byte: k and v; per patch: k queries (q, o projections), scores over the patch's bytes
    "cross_attn_proj": n_enc_cross * 2.0 * (2 * d * d + k * 2 * d * d / bpp),
    # = 2*2*d*k*bpp*w per patch / bpp: k queries over the bytes of w patches
    "cross_attn_scores": n_enc_cross * 2.0 * 2 * d * k * cfg.cross_attn_window_encoder,
    "pool_proj": 2.0 * d * k * d / bpp,
  }
  gcfg = cfg.global_config()
  glob = transformer_flops_per_token(
    d_model=gcfg.d_model,
    n_layers=gcfg.n_layers,
    n_heads=gcfg.n_heads,
    n_kv_heads=gcfg.num_kv_heads,
    head_dim=gcfg.head_size,
    mlp_dim=gcfg.hidden_dim,
    vocab_size=None,
    context=visible_keys(max(1, round(seq_len / bpp))),
  ).scaled(1.0 / bpp)
  glob_parts = dict(glob.parts)
  if k * d != cfg.d_global:
    glob_parts["to_global"] = 2.0 * k * d * cfg.d_global / bpp
  dec = local(cfg.n_layers_decoder, VOCAB_SIZE).parts
  dec_cross = {
    "latent_proj": 2.0 * cfg.d_global * k * d / bpp,
    # per byte: q and o; per latent: k keys and values; scores over k vectors
    "cross_attn_proj": n_dec_cross * 2.0 * (2 * d * d + k * 2 * d * d / bpp),
    "cross_attn_scores": n_dec_cross * 2.0 * 2 * d * k * cfg.cross_attn_window_decoder,
  }
  return (
    Flops({**enc, **enc_cross}).prefixed("encoder/")
    + Flops(glob_parts).prefixed("global/")
    + Flops({**dec, **dec_cross}).prefixed("decoder/")
  )


def flops_by_part(flops: Flops) -> dict[str, float]:
  """{"encoder": ..., "global": ..., "decoder": ...} forward FLOPs per byte."""
  out: dict[str, float] = {}
  for name, v in flops.parts.items():
    part = name.split("/", 1)[0]
    out[part] = out.get(part, 0.0) + v
  return out


# --- loss ----------------------------------------------------------------------------------------


def blt_loss(
  model: BLT, batch: dict[str, jax.Array], *, max_patches: int | None = None
) -> dict[str, jax.Array]:
  """Byte cross-entropy sums + patch statistics (patches, bytes in patches, overflow).

  `max_patches` overrides the model's patch slots; without it a batch's "patch_lengths"
  [B, P] (`train.blt_task.BLTBatches`) gives the slots (P <= cfg.max_patches, and no row
  has more patches unless P = cfg.max_patches: the same result with fewer empty slots).
  "overflow_sum" always counts the bytes that the model's own slots (`cfg.max_patches`)
  leave without a patch, so it reports training's overflow also where the loss runs
  with more slots.
  """
  if max_patches is None and "patch_lengths" in batch:
    max_patches = batch["patch_lengths"].shape[1]
  logits, lay = model.forward(
    batch["inputs"],
    patch_starts=batch["patch_starts"],
    hash_ids=batch.get("hash_ids"),
    segment_ids=batch["segment_ids"],
    positions=batch["positions"],
    max_patches=max_patches,
  )
  sums = token_ce_sums(logits, batch["targets"])
  sums["patches"] = jnp.sum(lay.lengths_BxP > 0).astype(jnp.float32)
  sums["patch_bytes"] = jnp.sum(lay.lengths_BxP).astype(jnp.float32)
  overflow = (batch["segment_ids"] > 0) & (lay.patch_ids_BxT >= model.cfg.max_patches)
  sums["overflow_sum"] = jnp.sum(overflow).astype(jnp.float32)  # logged per step as "overflow"
  return sums


def blt_eval_loss(model: BLT, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """`blt_loss` with a patch slot per byte of the row: no byte overflows, so a
  document's predictions do not depend on the documents packed before it."""
  return blt_loss(model, batch, max_patches=batch["inputs"].shape[1])
