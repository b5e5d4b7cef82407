"""Stacks of identical layers (MaxText style): one parameter array per weight, [L, ...].

`stack` builds L copies of a layer with `nnx.vmap`, so every parameter gets a
leading axis whose logical name is `LAYERS` (replicated by `sharding.RULES`).
`run` applies the layers in order with `jax.lax.scan`: one layer is traced and
compiled whatever L is. `scan=False` is the unrolled twin: a Python loop over
slices of the same stacked parameters (L copies of the layer in the program).

Both paths run the same body on the same per-layer slice, with the "layers"
name removed from the slice's sharding metadata as `nnx.scan` would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import spmd

LAYERS = "layers"
_METADATA = {nnx.PARTITION_NAME: LAYERS}

# Rematerialisation of a layer in the backward pass: which of its intermediates are saved.
REMAT_POLICIES = {
  "none": None,  # no remat: everything is saved
  "full": jax.checkpoint_policies.nothing_saveable,  # only the layer's input is saved
  "dots": jax.checkpoint_policies.dots_saveable,  # matmul outputs saved, the rest recomputed
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def stack(make: Callable[[nnx.Rngs], Any], n: int, rngs: nnx.Rngs):
  """`make(rngs)` built `n` times (independent inits), parameters stacked on axis 0."""

  @nnx.split_rngs(splits=n)
  @nnx.vmap(in_axes=0, out_axes=0, transform_metadata=_METADATA)
  def create(rngs: nnx.Rngs):
    return make(rngs)

  return create(rngs)


def run(
  layers,
  body: Callable,
  carry,
  xs=None,
  *,
  scan: bool = True,
  remat: str = "none",
):
  """(carry, ys) with `carry, ys[i] = body(layer_i, carry, xs[i])` for i = 0..L-1.

  `layers` is a stacked module (or a tuple of stacks of equal depth, sliced
  together); `xs` and `ys` are pytrees with a leading layer axis (None: none).
  `remat` names a policy of `REMAT_POLICIES`, applied to the layer body.
  """
  graphdef, state = nnx.split(layers)

  def step(c, inputs):
    state_i, x_i = inputs
    layer = nnx.merge(graphdef, spmd.remove_axis(state_i, 0, _METADATA))
    return body(layer, c, x_i)

  if remat != "none":
    # Inside a scan CSE cannot merge the recomputation away, so prevent_cse (which costs
    # optimisations) is needed only by the unrolled twin (jax.checkpoint docs).
    step = jax.checkpoint(step, policy=REMAT_POLICIES[remat], prevent_cse=not scan)
  if scan:
    return jax.lax.scan(step, carry, (state, xs))
  n = jax.tree.leaves(state)[0].shape[0]
  ys = None
  for i in range(n):
    carry, y = step(carry, jax.tree.map(lambda a: a[i], (state, xs)))
    if ys is None:  # one [L, ...] buffer per output, as the scan returns them
      ys = jax.tree.map(lambda a: jnp.zeros((n, *a.shape), a.dtype), y)
    ys = jax.tree.map(lambda buf, a: jax.lax.dynamic_update_index_in_dim(buf, a, i, 0), ys, y)
  return carry, ys
