"""ZeTT hypernetwork: predicts a pretrained LM's embeddings for any token.

A token of a new tokenizer is decomposed into base-tokenizer ids (at most
`max_len`, see `jaxtok.tokenizers.decompose`). The hypernetwork looks those
up in the base model's own input embeddings (concatenated with its output
embeddings when they are untied), projects them to its width, runs a small
bidirectional transformer encoder over the decomposition, pools the first
position and predicts the token's input and (if untied) output embedding with
separate heads.

Output scaling is fitted to the base model: each head's output is multiplied
by a per-dimension scale initialised to the standard deviation of the base
embeddings (and shifted by their mean), so predictions start at the right
magnitude. In the residual form (default) the prediction is
E = mean of the decomposition's base embeddings (FVT) + alpha * H(.), with the
heads zero-initialised: the untrained hypernetwork is exactly FVT. With
`copy_shared` a token the base vocabulary has keeps its base
embeddings and only the others are predicted (see `jaxtok.train.zett`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok.configlib import Section
from jaxtok.models.transformer import DTYPES, TransformerConfig, apply_blocks, make_blocks
from jaxtok.nn import attention as attn_lib
from jaxtok.nn.layers import Linear, RMSNorm, param


@dataclasses.dataclass(frozen=True)
class HypernetConfig(Section):
  d_model: int = 0  # 0: the base model's width (as in ZeTT)
  n_layers: int = 3
  n_heads: int = 4
  mlp_dim: int | None = None
  max_len: int = 7  # base tokens per decomposed token
  residual: bool = True  # E = FVT + alpha * H, heads zero-initialised
  alpha: float = 1.0
  # Tokens whose bytes are a base token keep its embeddings (in training and in use): the
  # hypernetwork predicts only the tokens the base vocabulary lacks. Off by default: on the
  # tiny preset, predicting them too (they are used in new contexts) scores far better.
  copy_shared: bool = False
  dtype: str = "float32"

  section: ClassVar[str] = "model"
  ignored: ClassVar[frozenset[str]] = frozenset({"name"})

  def validate(self) -> None:
    need = self.need

    need(self.d_model >= 0, "d_model", "must be >= 0 (0 = the base model's width)")
    need(self.n_layers >= 1, "n_layers", "must be >= 1")
    need(self.n_heads >= 1, "n_heads", "must be >= 1")
    need(self.max_len >= 1, "max_len", "must be >= 1")
    need(self.alpha > 0, "alpha", "must be positive")
    need(self.dtype in DTYPES, "dtype", f"one of {sorted(DTYPES)}")


def embedding_stats(emb_VxD: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-dimension mean and standard deviation of an embedding table."""
  e = jnp.asarray(emb_VxD, jnp.float32)
  return e.mean(0), e.std(0) + 1e-8


def fvt(ids_NxL: jax.Array, emb_VxD: jax.Array) -> jax.Array:
  """Fast Vocabulary Transfer: mean of the embeddings of each decomposition (-1 = padding).

  A row with no ids gets the mean of the whole table.
  """
  valid = ids_NxL >= 0
  e = jnp.take(emb_VxD, jnp.maximum(ids_NxL, 0), axis=0).astype(jnp.float32)
  n = valid.sum(-1, keepdims=True)
  mean = jnp.where(valid[..., None], e, 0.0).sum(1) / jnp.maximum(n, 1)
  return jnp.where(n > 0, mean, jnp.asarray(emb_VxD, jnp.float32).mean(0))


class _Head(nnx.Module):
  """Linear(width -> d) then the fitted per-dimension scale (and shift, non-residual)."""

  def __init__(self, width, d, mean, std, *, residual, rngs, dtype):
    init = nnx.initializers.zeros if residual else nnx.initializers.normal(width**-0.5)
    self.proj = Linear(width, d, (None, "embed"), rngs=rngs, init=init, dtype=dtype)
    self.scale = param(rngs, lambda *_: jnp.asarray(std, jnp.float32), (d,), ("norm",))
    self.shift = (
      None if residual else param(rngs, lambda *_: jnp.asarray(mean, jnp.float32), (d,), ("norm",))
    )

  def __call__(self, h):
    y = self.proj(h).astype(jnp.float32) * self.scale[...]
    return y if self.shift is None else y + self.shift[...]


class Hypernet(nnx.Module):
  """(decomposition ids [N, L], base embeddings) -> predicted (input, output) embeddings [N, D]."""

  def __init__(
    self,
    cfg: HypernetConfig,
    *,
    emb_in: jax.Array,
    emb_out: jax.Array | None = None,
    rngs: nnx.Rngs,
  ):
    """`emb_in`/`emb_out` are the base tables; only their statistics are kept (fitted scaling)."""
    cfg.validate()
    self.cfg = cfg
    d_base = emb_in.shape[1]
    self.untied = emb_out is not None
    width = cfg.d_model or d_base
    dtype = DTYPES[cfg.dtype]
    self.in_proj = Linear(
      d_base * (2 if self.untied else 1), width, (None, "embed"), rngs=rngs, dtype=dtype
    )
    self.in_norm = RMSNorm(d_base * (2 if self.untied else 1), rngs=rngs)
    enc = TransformerConfig(
      vocab_size=1,
      d_model=width,
      n_layers=cfg.n_layers,
      n_heads=cfg.n_heads,
      mlp_dim=cfg.mlp_dim,
      dtype=cfg.dtype,
    )
    self.blocks = make_blocks(enc, rngs)
    self.norm = RMSNorm(width, rngs=rngs)
    kw = dict(residual=cfg.residual, rngs=rngs, dtype=dtype)
    self.head_in = _Head(width, d_base, *embedding_stats(emb_in), **kw)
    self.head_out = _Head(width, d_base, *embedding_stats(emb_out), **kw) if self.untied else None

  def __call__(
    self, ids_NxL: jax.Array, emb_in: jax.Array, emb_out: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array | None]:
    """Predicted input embeddings [N, D] and output embeddings [N, D] (None when tied)."""
    if self.untied != (emb_out is not None):
      raise ValueError("pass emb_out exactly when the hypernetwork was built for untied embeddings")
    n, length = ids_NxL.shape
    valid = (ids_NxL >= 0).astype(jnp.int32)
    safe = jnp.maximum(ids_NxL, 0)
    x = jnp.take(emb_in, safe, axis=0).astype(jnp.float32)
    if self.untied:
      x = jnp.concatenate([x, jnp.take(emb_out, safe, axis=0).astype(jnp.float32)], -1)
    h = self.in_proj(self.in_norm(x))
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (n, length))
    # Bidirectional over the decomposition; padding is segment 0 and sees nothing.
    mask = attn_lib.Mask.self_attention(valid, causal=False)
    h, _ = apply_blocks(self.blocks, h, positions, mask)
    pooled = self.norm(h[:, 0])
    pred_in = self.head_in(pooled)
    pred_out = self.head_out(pooled) if self.untied else None
    if self.cfg.residual:
      pred_in = fvt(ids_NxL, emb_in) + self.cfg.alpha * pred_in
      if self.untied:
        pred_out = fvt(ids_NxL, emb_out) + self.cfg.alpha * pred_out
    return pred_in, pred_out


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, ids_NxL, emb_in, emb_out):
  return nnx.merge(graphdef, state)(ids_NxL, emb_in, emb_out)


def predictor(hypernet: Hypernet, emb_in, emb_out=None):
  """numpy decomposition ids [N, L] -> numpy (input, output or None) embeddings [N, D].

  The jitted function is shared by every hypernetwork of the same structure: new
  weights or a new predictor do not compile again.
  """
  graphdef, state = nnx.split(hypernet)
  emb_in = jnp.asarray(emb_in)
  emb_out = None if emb_out is None else jnp.asarray(emb_out)

  def predict(ids_NxL):
    e_in, e_out = _apply(graphdef, state, jnp.asarray(ids_NxL), emb_in, emb_out)
    return np.asarray(e_in), None if e_out is None else np.asarray(e_out)

  return predict
