"""Pure, jitted train and eval steps (nnx.split once; merge inside the step).

A loss function maps (model, batch) to a dict of *sums* with at least
"loss_sum" (nats) and "tokens"; the step divides by the total token count of
the whole (accumulated) batch, so gradient accumulation is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxtok.models.losses import LN2

LossFn = Callable[[nnx.Module, dict[str, jax.Array]], dict[str, jax.Array]]


@struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: Any  # nnx.State of the model's Params
  opt_state: Any


def _grads_and_sums(graphdef, loss_fn: LossFn, params, batch, grad_accum: int, frozen=()):
  def loss_of(p, mb):
    sums = loss_fn(nnx.merge(graphdef, p, *frozen), mb)
    return sums["loss_sum"], sums

  grad_fn = jax.grad(loss_of, has_aux=True)
  if grad_accum == 1:
    return grad_fn(params, batch)

  def split(x):
    if x.shape[0] % grad_accum:
      raise ValueError(f"batch of {x.shape[0]} rows does not split into {grad_accum} micro-batches")
    return x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:])

  micro = jax.tree.map(split, batch)

  def body(carry, mb):
    g, s = grad_fn(params, mb)
    return jax.tree.map(jnp.add, carry, (g, s)), None

  zeros = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], micro))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
  (grads, sums), _ = jax.lax.scan(body, zeros, micro)
  return grads, sums


def make_train_step(
  graphdef,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  loss_fn: LossFn,
  *,
  grad_accum: int = 1,
  jit: bool = True,
  shardings=None,
):
  """Returns step(state, batch, *frozen) -> (state, metrics); the state buffer is donated.

  `frozen` are further nnx.States of the model (split off with a filter) that
  are merged in but neither differentiated nor updated: a frozen base model.
  """

  def step(state: TrainState, batch, *frozen):
    grads, sums = _grads_and_sums(graphdef, loss_fn, state.params, batch, grad_accum, frozen)
    tokens = jnp.maximum(sums["tokens"], 1.0)
    grads = jax.tree.map(lambda g: g / tokens, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(sums)
    # The cross-entropy of the targets that stand for bytes (losses.py); a loss without
    # it (an L2 warm-up) reports loss_sum per byte.
    nats, nbytes = sums.get("bpb_nats", sums["loss_sum"]), sums.get("bytes", tokens)
    metrics.update(
      loss=sums["loss_sum"] / tokens,
      bpb=nats / LN2 / jnp.maximum(nbytes, 1.0),
      grad_norm=optax.tree.norm(grads),
      lr=schedule(state.step),
    )
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  if not jit:
    return step
  kw = {} if shardings is None else dict(in_shardings=shardings, out_shardings=(shardings[0], None))
  return jax.jit(step, donate_argnums=0, **kw)


def make_eval_step(graphdef, loss_fn: LossFn, *, jit: bool = True):
  """Returns eval(params, batch, *frozen) -> dict of sums."""

  def step(params, batch, *frozen):
    return loss_fn(nnx.merge(graphdef, params, *frozen), batch)

  return jax.jit(step) if jit else step
