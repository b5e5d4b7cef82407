"""Byte Latent Transformer (Pagnoni et al., 2024) in Flax NNX.

bytes --LocalEncoder--> patches --LatentTransformer--> latents --LocalDecoder--> next bytes

* LocalEncoder: byte embeddings + hash n-gram embeddings, byte self-attention
  blocks (causal, document and sliding-window masks), then `cross_attn_k`
  queries per patch (max-pool of the patch's byte states, projected) that
  cross-attend to the bytes of their own patch (equal segment ids), after the
  last block or after every block.
* LatentTransformer: a causal transformer over the [B, P, D] patch sequence
  (document-masked); a clean sub-module that patch-level training can reuse.
* LocalDecoder: the encoder's byte states cross-attend to the `cross_attn_k`
  vectors of one latent (see `patching.layout` for which), then byte
  self-attention blocks, RMSNorm and a head to the 260 byte ids.

Every attention goes through `jaxtok.nn.attention.attention` with a `Mask`
(no dense masks here), so a block-sparse kernel applies to all of them.
Rows that see nothing (empty or padding patches, bytes without a latent yet)
get zeros from `attention`, never NaN.

Deliberate differences from the reference implementation (facebookresearch/blt):
* Patch layouts have a static patch count per row (`max_patches`); bytes beyond
  it are predicted by the local models alone and counted as overflow.
* Space patching: byte t reads the latent of the patch *before its own*. The
  reference shifts patch ids by one for every scheme, which for space patches
  tells byte t whether byte t+1 is a boundary (the label leaks); entropy and
  static patches keep the reference alignment (patch before byte t+1's).
* Hash n-gram windows and patches never cross document boundaries in packed rows.
* No BOE padding tokens; positions 0 and 1 of every document piece start patches
  (so the BOS byte is a patch of its own), whatever the scheme.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtok import patching
from jaxtok.configlib import Section
from jaxtok.data.codec import VOCAB_SIZE
from jaxtok.models.flops import Flops, transformer_flops_per_token, visible_keys
from jaxtok.models.losses import token_ce_sums
from jaxtok.models.transformer import DTYPES, Block, KVCache, TransformerConfig
from jaxtok.nn import attention as attn_lib
from jaxtok.nn import pooling
from jaxtok.nn.layers import Embed, Linear, RMSNorm, mlp_hidden_dim


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
  hash_vocab: int = 4096  # buckets per hash table; 0 = no hash n-gram embeddings
  hash_ngram_sizes: tuple[int, ...] = (3, 4, 5, 6, 7, 8)
  hash_functions: int = 1
  rope_theta: float = 10000.0
  norm_eps: float = 1e-5
  dtype: str = "float32"
  param_dtype: str = "float32"
  attention_impl: str = "xla"
  pool_impl: str = "xla"  # patch max-pool: "xla" (segment_max) or "pallas" (kernel)
  remat: bool = False
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
      mlp_dim=self.mlp_dim_local,
      rope_theta=self.rope_theta,
      sliding_window=self.local_window,
      norm_eps=self.norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_impl=self.attention_impl,
      remat=self.remat,
    )

  def global_config(self) -> TransformerConfig:
    return TransformerConfig(
      vocab_size=VOCAB_SIZE,  # unused: the latent transformer has no embedding or head
      d_model=self.d_global,
      n_layers=self.n_layers_global,
      n_heads=self.n_heads_global,
      n_kv_heads=self.n_kv_heads_global,
      mlp_dim=self.mlp_dim_global,
      rope_theta=self.rope_theta,
      norm_eps=self.norm_eps,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      attention_impl=self.attention_impl,
      remat=self.remat,
    )

  @property
  def encoder_cross_layers(self) -> tuple[int, ...]:
    """Encoder layers followed by a cross-attention (the last one, or all)."""
    n = self.n_layers_encoder
    return tuple(range(n)) if self.cross_attn_all_layers_encoder else (n - 1,)


def _run_blocks(blocks, x, positions, mask, remat: bool):
  for block in blocks:
    if remat:
      x = nnx.remat(lambda blk, y: blk(y, positions, mask))(block, x)
    else:
      x = block(x, positions, mask)
  return x


class CrossAttention(nnx.Module):
  """Queries of one sequence attend to another (RMSNorm on both sides, no RoPE)."""

  def __init__(self, cfg: BLTConfig, *, depth: int, rngs: nnx.Rngs):
    d, n = cfg.d_local, cfg.cross_attn_heads
    self.n_heads, self.head_dim = n, d // n
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
    return self.wk(x).reshape(shape), self.wv(x).reshape(shape)

  def attend(self, x_BxTxD, k, v, mask: attn_lib.Mask):
    b, t, _ = x_BxTxD.shape
    q = self.wq(self.q_norm(x_BxTxD)).reshape(b, t, self.n_heads, self.head_dim)
    out = attn_lib.attention(q, k, v, mask, impl=self.impl)
    return self.wo(out.reshape(b, t, -1))

  def __call__(self, x_BxTxD, kv_BxSxD, mask: attn_lib.Mask):
    return self.attend(x_BxTxD, *self.kv(kv_BxSxD), mask)


def segment_max_pool(x_BxTxD, seg_BxT, num_segments: int, impl: str = "xla") -> jax.Array:
  """Max over the bytes of each patch (seg = patch + 1; 0 = none): [B, P, D]; empty gives 0."""
  return pooling.segment_pool(x_BxTxD, seg_BxT - 1, num_segments, "max", impl=impl)


class LocalEncoder(nnx.Module):
  def __init__(self, cfg: BLTConfig, *, rngs: nnx.Rngs):
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    lcfg = cfg.local_config(cfg.n_layers_encoder)
    self.cfg, self.lcfg = cfg, lcfg
    self.embed = Embed(VOCAB_SIZE, cfg.d_local, rngs=rngs, dtype=dtype, param_dtype=pdtype)
    if cfg.n_hash_tables:
      self.hash_embed = Embed(
        cfg.n_hash_tables * cfg.hash_vocab, cfg.d_local, rngs=rngs, dtype=dtype, param_dtype=pdtype
      )
    self.blocks = nnx.List([Block(lcfg, rngs=rngs) for _ in range(cfg.n_layers_encoder)])
    self.cross_at = cfg.encoder_cross_layers
    self.cross = nnx.List(
      [CrossAttention(cfg, depth=len(self.cross_at), rngs=rngs) for _ in self.cross_at]
    )
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
    return x

  def patch_queries(self, pooled_BxPxD):
    """k queries per patch from its pooled byte state: [B, P*k, D]."""
    b, p, d = pooled_BxPxD.shape
    return self.pool_proj(pooled_BxPxD).reshape(b, p * self.cfg.cross_attn_k, d)

  def __call__(self, x_BxTxD, positions_BxT, self_mask, lay: patching.PatchLayout):
    """(byte states [B, T, D], patch vectors [B, P, k*D])."""
    k = self.cfg.cross_attn_k
    p = lay.patch_seg_BxP.shape[1]
    cross_mask = attn_lib.Mask(
      q_segment_ids=jnp.repeat(lay.patch_seg_BxP, k, axis=1),
      kv_segment_ids=lay.enc_seg_BxT,
      causal=False,
    )
    q = None
    for i, block in enumerate(self.blocks):
      x_BxTxD = _run_blocks([block], x_BxTxD, positions_BxT, self_mask, self.cfg.remat)
      if i in self.cross_at:
        if q is None:
          pooled = segment_max_pool(x_BxTxD, lay.enc_seg_BxT, p, self.cfg.pool_impl)
          q = self.patch_queries(pooled)
        q = q + self.cross[self.cross_at.index(i)](q, x_BxTxD, cross_mask)
    b, _, d = q.shape
    return x_BxTxD, q.reshape(b, p, k * d)


class LatentTransformer(nnx.Module):
  """Causal transformer over a [B, P, D] sequence of patch vectors (no embedding, no head)."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.final_norm = RMSNorm(
      cfg.d_model, eps=cfg.norm_eps, rngs=rngs, param_dtype=DTYPES[cfg.param_dtype]
    )

  def __call__(self, h_BxPxD, *, segment_ids_BxP=None, positions_BxP=None):
    b, p, _ = h_BxPxD.shape
    if positions_BxP is None:
      positions_BxP = jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (b, p))
    mask = attn_lib.Mask.self_attention(segment_ids_BxP)
    h = _run_blocks(self.blocks, h_BxPxD, positions_BxP, mask, self.cfg.remat)
    return self.final_norm(h)

  def init_cache(self, batch: int, max_patches: int) -> KVCache:
    cfg = self.cfg
    shape = (cfg.n_layers, batch, max_patches, cfg.num_kv_heads, cfg.head_size)
    dtype = DTYPES[cfg.dtype]
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))

  def decode(self, h_Bx1xD, cache: KVCache) -> tuple[jax.Array, KVCache]:
    """The next patch, continuing the cached ones (one document per cache)."""
    b = h_Bx1xD.shape[0]
    s = cache.k.shape[2]
    pos = jnp.full((b, 1), cache.end, jnp.int32)
    kv_idx = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    mask = attn_lib.Mask(
      kv_segment_ids=(kv_idx <= cache.end).astype(jnp.int32), q_idx=pos, kv_idx=kv_idx
    )
    x, ks, vs = h_Bx1xD, [], []
    for i, block in enumerate(self.blocks):
      x, k, v = block.decode(x, pos, mask, cache.k[i], cache.v[i], cache.end)
      ks.append(k)
      vs.append(v)
    return self.final_norm(x), KVCache(jnp.stack(ks), jnp.stack(vs), cache.end + 1)


class LocalDecoder(nnx.Module):
  def __init__(self, cfg: BLTConfig, *, rngs: nnx.Rngs):
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    lcfg = cfg.local_config(cfg.n_layers_decoder)
    self.cfg, self.lcfg = cfg, lcfg
    k = cfg.cross_attn_k
    self.latent_proj = Linear(
      cfg.d_global, k * cfg.d_local, ("mlp", "embed"), rngs=rngs, dtype=dtype, param_dtype=pdtype
    )
    every = cfg.cross_attn_all_layers_decoder
    self.cross_at = tuple(range(cfg.n_layers_decoder)) if every else (0,)  # before these layers
    self.cross = nnx.List(
      [CrossAttention(cfg, depth=len(self.cross_at), rngs=rngs) for _ in self.cross_at]
    )
    self.blocks = nnx.List([Block(lcfg, rngs=rngs) for _ in range(cfg.n_layers_decoder)])
    self.norm = RMSNorm(cfg.d_local, eps=cfg.norm_eps, rngs=rngs, param_dtype=pdtype)
    self.head = Linear(
      cfg.d_local, VOCAB_SIZE, ("embed", "vocab"), rngs=rngs, dtype=dtype, param_dtype=pdtype
    )

  def latent_vectors(self, g_BxPxDg):
    """k vectors of width d_local per latent: [B, P*k, D]."""
    b, p, _ = g_BxPxDg.shape
    return self.latent_proj(g_BxPxDg).reshape(b, p * self.cfg.cross_attn_k, self.cfg.d_local)

  def __call__(self, x_BxTxD, g_BxPxDg, positions_BxT, self_mask, lay: patching.PatchLayout):
    kv = self.latent_vectors(g_BxPxDg)
    cross_mask = attn_lib.Mask(
      q_segment_ids=lay.dec_seg_BxT,
      kv_segment_ids=jnp.repeat(lay.patch_seg_BxP, self.cfg.cross_attn_k, axis=1),
      causal=False,
    )
    for i, block in enumerate(self.blocks):
      if i in self.cross_at:
        x_BxTxD = x_BxTxD + self.cross[self.cross_at.index(i)](x_BxTxD, kv, cross_mask)
      x_BxTxD = _run_blocks([block], x_BxTxD, positions_BxT, self_mask, self.cfg.remat)
    return self.logits(x_BxTxD)

  def logits(self, x_BxTxD):
    return self.head(self.norm(x_BxTxD)).astype(jnp.float32)


class BLT(nnx.Module):
  """bytes (+ hash ids + patch starts) -> next-byte logits [B, T, 260]."""

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
    self.latent = LatentTransformer(cfg.global_config(), rngs=rngs)
    self.decoder = LocalDecoder(cfg, rngs=rngs)

  def project_patches(self, patches_BxPxKD):
    return self.to_global(patches_BxPxKD) if hasattr(self, "to_global") else patches_BxPxKD

  def local_mask(self, segment_ids_BxT) -> attn_lib.Mask:
    return attn_lib.Mask.self_attention(segment_ids_BxT, window=self.cfg.local_window)

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
    p = max_patches or self.cfg.max_patches
    lay = patching.layout(patch_starts, segment_ids, p, lookahead=self.cfg.lookahead)
    mask = self.local_mask(segment_ids)
    x = self.encoder.embed_bytes(ids_BxT, hash_ids)
    x, patches = self.encoder(x, positions, mask, lay)
    g = self.latent(self.project_patches(patches), segment_ids_BxP=lay.doc_BxP)
    return self.decoder(x, g, positions, mask, lay), lay

  def __call__(self, ids_BxT, **kw) -> jax.Array:
    return self.forward(ids_BxT, **kw)[0]


# --- FLOPs --------------------------------------------------------------------------------------


def blt_flops(cfg: BLTConfig, seq_len: int, bytes_per_patch: float) -> Flops:
  """Forward FLOPs per byte, by part ("encoder/...", "global/...", "decoder/...").

  Per-patch work is divided by the mean patch size; attention counts only the
  keys a query can see (its patch for the encoder cross-attention, k latent
  vectors for the decoder's, the causal window for self-attention).
  """
  d, k, bpp = cfg.d_local, cfg.cross_attn_k, bytes_per_patch
  hd = d // cfg.n_heads_local
  local_mlp = cfg.mlp_dim_local or mlp_hidden_dim(d)
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
    "cross_attn_scores": n_enc_cross * 2.0 * 2 * d * k,  # = 2*2*d*k*bpp per patch / bpp
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
    "cross_attn_scores": n_dec_cross * 2.0 * 2 * d * k,
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


def blt_loss(model: BLT, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Byte cross-entropy sums + patch statistics (patches, bytes in patches, overflow)."""
  logits, lay = model.forward(
    batch["inputs"],
    patch_starts=batch["patch_starts"],
    hash_ids=batch.get("hash_ids"),
    segment_ids=batch["segment_ids"],
    positions=batch["positions"],
  )
  sums = token_ce_sums(logits, batch["targets"])
  sums["patches"] = jnp.sum(lay.lengths_BxP > 0).astype(jnp.float32)
  sums["patch_bytes"] = jnp.sum(lay.lengths_BxP).astype(jnp.float32)
  sums["overflow_bytes"] = jnp.sum(lay.overflow_B).astype(jnp.float32)
  return sums
