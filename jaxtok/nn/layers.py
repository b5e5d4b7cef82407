"""Small shared layers: every parameter carries logical axis names."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtok.sharding import constrain

Initializer = Callable[..., jax.Array]


def param(
  rngs: nnx.Rngs,
  init: Initializer,
  shape: Sequence[int],
  names: Sequence[str | None],
  dtype=jnp.float32,
) -> nnx.Param:
  """A Param annotated with logical axis names (mapped to a mesh by jaxtok.sharding).

  Eager sharding is off so that models build without a mesh; the trainer places
  the state on the mesh with `sharding.state_shardings`.
  """
  return nnx.Param(
    init(rngs.params(), tuple(shape), dtype), out_sharding=tuple(names), eager_sharding=False
  )


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x @ w (x [..., in], w [in, out]); its weight gradient is x^T @ dy with the transpose
  written out. Left to autodiff, XLA:CPU transposes dy inside the fusion that produces it
  (strided reads of every input): the MLP backward then takes ~1.9x the time (bench/README.md)."""
  return jnp.dot(x, w)


def _matmul_fwd(x, w):
  return jnp.dot(x, w), (x, w)


def _matmul_bwd(res, dy):
  x, w = res
  x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
  return jnp.dot(dy, w.T).astype(x.dtype), jnp.dot(x2.T, dy2).astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


class Linear(nnx.Module):
  """y = x @ W (+ b with `bias`): W is [in, out] with logical names `names`, b is [out]."""

  def __init__(
    self,
    d_in: int,
    d_out: int,
    names: tuple[str | None, str | None],
    *,
    rngs: nnx.Rngs,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    init: Initializer | None = None,
    bias: bool = False,
  ):
    init = init or nnx.initializers.normal(stddev=d_in**-0.5)
    self.kernel = param(rngs, init, (d_in, d_out), names, param_dtype)
    if bias:
      self.bias = param(rngs, nnx.initializers.zeros, (d_out,), names[1:], param_dtype)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    y = matmul(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    return y + self.bias[...].astype(self.dtype) if hasattr(self, "bias") else y


class RMSNorm(nnx.Module):
  """Root-mean-square norm, statistics in float32 whatever the compute dtype."""

  def __init__(self, dim: int, *, eps: float = 1e-5, rngs: nnx.Rngs, param_dtype=jnp.float32):
    self.scale = param(rngs, nnx.initializers.ones, (dim,), ("norm",), param_dtype)
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


class Embed(nnx.Module):
  """Token embedding; `attend` reuses the table as a tied output head."""

  def __init__(
    self,
    vocab_size: int,
    dim: int,
    *,
    rngs: nnx.Rngs,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    stddev: float = 1.0,
  ):
    self.embedding = param(
      rngs,
      nnx.initializers.normal(stddev=stddev),
      (vocab_size, dim),
      ("vocab", "embed"),
      param_dtype,
    )
    self.dtype = dtype

  def __call__(self, ids: jax.Array) -> jax.Array:
    # Negative ids are padding (PAD_ID = -1): look up row 0, callers mask them. The table is
    # gathered whole first (FSDP), so the lookup's rows come out split like `ids`: left to
    # the partitioner they come out split over the table's embed axis, which it cannot
    # convert to the batch's layout without a full rematerialization.
    table = constrain(self.embedding[...], (None, None))
    return jnp.take(table, jnp.maximum(ids, 0), axis=0).astype(self.dtype)

  def attend(self, x: jax.Array) -> jax.Array:
    return jnp.dot(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


class SwiGLU(nnx.Module):
  """Gated MLP: down(silu(x W_gate) * (x W_up)); `length` names the sequence axis of x
  [B, T, D] for the hidden activation's sharding (jaxtok.sharding.constrain)."""

  def __init__(
    self,
    dim: int,
    hidden: int,
    *,
    rngs: nnx.Rngs,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    down_init: Initializer | None = None,
    length: str = "seq",
  ):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.length = length
    self.gate = Linear(dim, hidden, ("embed", "mlp"), **kw)
    self.up = Linear(dim, hidden, ("embed", "mlp"), **kw)
    self.down = Linear(hidden, dim, ("mlp", "embed"), init=down_init, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = jax.nn.silu(self.gate(x)) * self.up(x)
    if h.ndim == 3:
      h = constrain(h, ("batch", self.length, "mlp"))
    return self.down(h)


def mlp_hidden_dim(dim: int, multiple_of: int = 64, ffn_multiplier: float = 1.0) -> int:
  """Llama sizing: 2/3 of 4*dim (so SwiGLU matches a 4x GELU MLP), rounded up."""
  hidden = int(ffn_multiplier * int(2 * 4 * dim / 3))
  return multiple_of * ((hidden + multiple_of - 1) // multiple_of)
