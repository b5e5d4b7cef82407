"""Segment pooling kernel (interpret mode on CPU) against jax.ops.segment_max/sum."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.nn import pooling
from pallas_kernels import segment_pool as sp


def patch_ids(rng, b, t, num_patches):
  """Sorted patch ids of random lengths, -1 on a padded tail; some rows run out
  of bytes before the last patch (empty patches), others reach ids >= num_patches."""
  ids = np.full((b, t), -1, np.int32)
  for i in range(b):
    row = np.repeat(np.arange(num_patches + 3), rng.integers(1, 9, size=num_patches + 3))
    n = t - rng.integers(0, t // 4)
    ids[i, :n] = row[:n]
  return ids


@functools.partial(jax.jit, static_argnames=("num_segments", "kind", "block_p", "block_t"))
def _both(x, ids, ct, num_segments, kind, block_p, block_t):
  def run(f):
    out, vjp = jax.vjp(f, x)
    return out, vjp(ct)[0]

  kernel = lambda x: sp.segment_pool(x, ids, num_segments, kind, block_p=block_p, block_t=block_t)
  return run(lambda x: sp.segment_pool_reference(x, ids, num_segments, kind)), run(kernel)


@pytest.mark.parametrize("kind", ["max", "mean"])
@pytest.mark.parametrize("block_p,block_t", [(8, 16), (8, 64)])
def test_matches_segment_ops(kind, block_p, block_t):
  """Values and gradients over random patch layouts; T=203 leaves a ragged tail;
  (8, 64) blocks are TPU-legal."""
  rng = np.random.default_rng(0)
  b, t, d, p = 2, 203, 16, 45
  x = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
  ct = jnp.asarray(rng.normal(size=(b, p, d)), jnp.float32)
  for _ in range(3):
    ids = jnp.asarray(patch_ids(rng, b, t, p))
    (want, want_dx), (got, got_dx) = _both(x, ids, ct, p, kind, block_p, block_t)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-6, atol=1e-6)


def test_hand_computed_and_ties():
  """A hand example: ties split the max's gradient evenly; empty patches are 0."""
  x = jnp.asarray([[1.0, 3.0, 3.0, 2.0, 5.0, 7.0]])[..., None]
  ids = jnp.asarray([[0, 0, 0, 2, 2, -1]])
  out = sp.segment_pool(x, ids, 4, "max")
  np.testing.assert_array_equal(out[0, :, 0], [3.0, 0.0, 5.0, 0.0])
  np.testing.assert_allclose(sp.segment_pool(x, ids, 4, "mean")[0, :, 0], [7 / 3, 0, 3.5, 0])
  dx = jax.grad(lambda x: sp.segment_pool(x, ids, 4, "max").sum())(x)
  np.testing.assert_array_equal(dx[0, :, 0], [0.0, 0.5, 0.5, 0.0, 1.0, 0.0])


def test_unsorted_ids_and_bfloat16():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(1, 100, 8)), jnp.bfloat16)
  ids = jnp.asarray(rng.integers(-1, 12, size=(1, 100)), jnp.int32)
  for kind in ("max", "mean"):
    want = pooling.segment_pool(x, ids, 12, kind)
    got = pooling.segment_pool(x, ids, 12, kind, impl="pallas")
    np.testing.assert_allclose(np.float32(got), np.float32(want), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
  "platform,backend,target", [("tpu", "tpu", "tpu_custom_call"), ("cuda", "gpu", "__gpu")]
)
def test_lowers_for_accelerators(platform, backend, target):
  x = jnp.zeros((2, 1000, 256), jnp.bfloat16)
  ids = jnp.zeros((2, 1000), jnp.int32)
  f = lambda x: sp.segment_pool(x, ids, 200, "max", backend=backend).astype(jnp.float32).sum()
  text = jax.jit(jax.grad(f)).trace(x).lower(lowering_platforms=(platform,)).as_text()
  assert target in text


def test_bad_inputs():
  x, ids = jnp.zeros((1, 4, 2)), jnp.zeros((1, 4), jnp.int32)
  with pytest.raises(ValueError, match="kind"):
    pooling.segment_pool(x, ids, 2, "min")
  with pytest.raises(ValueError, match="impl"):
    pooling.segment_pool(x, ids, 2, impl="cuda")
  with pytest.raises(ValueError, match="integers"):
    pooling.segment_pool(x, ids.astype(jnp.float32), 2)
  with pytest.raises(ValueError, match="B x T"):
    pooling.segment_pool(x, ids[:, :3], 2)
