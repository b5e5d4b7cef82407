"""Stacked layers: one [L, ...] parameter per weight, named "layers", scanned = unrolled."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxtok import sharding
from jaxtok.nn import stack
from jaxtok.nn.layers import Linear


class Layer(nnx.Module):
  def __init__(self, rngs):
    self.up = Linear(8, 16, ("embed", "mlp"), rngs=rngs)
    self.down = Linear(16, 8, ("mlp", "embed"), rngs=rngs)

  def __call__(self, x):
    return x + self.down(jnp.tanh(self.up(x)))


def test_stacked_params_carry_the_layers_axis_and_shard_by_the_rules():
  layers = stack.stack(Layer, 3, nnx.Rngs(0))
  kernel = layers.up.kernel
  assert kernel.shape == (3, 8, 16)
  assert kernel.get_metadata()["out_sharding"] == ("layers", "embed", "mlp")
  # Independent initialisations, not one layer repeated.
  assert not np.allclose(kernel[0], kernel[1])
  mesh = sharding.make_mesh(data=1, fsdp=1, tensor=1, devices=jax.devices()[:1])
  specs = sharding.state_shardings(nnx.state(layers, nnx.Param), mesh)
  assert specs["up"]["kernel"].spec == P(None, "fsdp", "tensor")
  assert specs["down"]["kernel"].spec == P(None, "tensor", "fsdp")


@pytest.mark.parametrize("remat", sorted(stack.REMAT_POLICIES))
def test_scan_and_loop_give_the_same_outputs_and_gradients(remat):
  layers = stack.stack(Layer, 4, nnx.Rngs(1))
  graphdef, params = nnx.split(layers)
  x = jax.random.normal(jax.random.key(0), (2, 8))
  xs = jax.random.normal(jax.random.key(1), (4, 2, 8))  # a per-layer input

  def f(params, scan):
    def body(layer, h, x_i):
      # Inside the body a layer sees its own slice and metadata without the "layers" name.
      assert layer.up.kernel.shape == (8, 16)
      assert layer.up.kernel.get_metadata()["out_sharding"] == ("embed", "mlp")
      h = layer(h + x_i)
      return h, h.sum(-1)

    h, ys = stack.run(nnx.merge(graphdef, params), body, x, xs, scan=scan, remat=remat)
    return (h**2).sum() + (ys**2).sum(), (h, ys)

  grad = jax.jit(jax.grad(f, has_aux=True), static_argnums=1)
  g_scan, (h_scan, ys_scan) = grad(params, True)
  g_loop, (h_loop, ys_loop) = grad(params, False)
  assert ys_scan.shape == (4, 2)
  np.testing.assert_allclose(h_scan, h_loop, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ys_scan, ys_loop, rtol=1e-6, atol=1e-6)
  for a, b in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_loop)):  # up to float32 rounding
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())
