import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.nn.rope import apply_rope


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_scores_depend_only_on_relative_position(layout):
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

  def score(m, n):
    qm = apply_rope(q, jnp.array([[m]]), layout=layout)
    kn = apply_rope(k, jnp.array([[n]]), layout=layout)
    return float(jnp.sum(qm * kn))

  assert score(3, 1) == pytest.approx(score(10, 8), rel=1e-5)
  assert score(7, 7) == pytest.approx(score(0, 0), rel=1e-5)
  assert score(5, 0) != pytest.approx(score(5, 4), rel=1e-3)
  # Rotation keeps norms.
  np.testing.assert_allclose(
    jnp.linalg.norm(apply_rope(q, jnp.array([[9]]), layout=layout)), jnp.linalg.norm(q), rtol=1e-5
  )


def test_layouts_agree_up_to_a_permutation():
  rng = np.random.default_rng(1)
  d = 8
  x = rng.normal(size=(1, 3, 2, d)).astype(np.float32)
  pos = jnp.array([[0, 4, 11]])
  perm = np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])  # interleaved -> half order
  inter = np.asarray(apply_rope(jnp.asarray(x), pos, layout="interleaved"))
  half = np.asarray(apply_rope(jnp.asarray(x[..., perm]), pos, layout="half"))
  np.testing.assert_allclose(inter[..., perm], half, atol=1e-5)


def test_position_zero_is_identity():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 1, 3, 8)), jnp.float32)
  np.testing.assert_allclose(apply_rope(x, jnp.zeros((2, 1), jnp.int32)), x, atol=1e-6)
