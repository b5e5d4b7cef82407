"""`layers.matmul` (a custom VJP that writes the weight gradient's transpose out) has
autodiff's gradients of `jnp.dot`, for 2-D and batched inputs and in bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.nn.layers import matmul


@pytest.mark.parametrize("shape", [(6, 5), (2, 7, 5)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matmul_gradients_equal_autodiff_of_dot(shape, dtype):
  kx, kw, kc = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, shape).astype(dtype)
  w = jax.random.normal(kw, (5, 3)).astype(dtype)
  ct = jax.random.normal(kc, (*shape[:-1], 3)).astype(dtype)

  def loss(f, x, w):
    return jnp.sum((f(x, w) * ct).astype(jnp.float32))

  got = jax.grad(loss, argnums=(1, 2))(matmul, x, w)
  want = jax.grad(loss, argnums=(1, 2))(jnp.dot, x, w)
  tol = 1e-6 if dtype == jnp.float32 else 2e-2
  for g, r in zip(got, want):
    assert g.dtype == r.dtype and g.shape == r.shape
    np.testing.assert_allclose(np.float32(g), np.float32(r), rtol=tol, atol=tol)
  np.testing.assert_array_equal(np.float32(matmul(x, w)), np.float32(jnp.dot(x, w)))
