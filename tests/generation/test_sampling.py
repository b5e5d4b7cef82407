"""Sampling rules against numpy: greedy, top-k, top-p, log-probs, per-row keys, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.generation.sampling import (
  SamplingConfig,
  byte_vocab_allowed,
  log_prob,
  row_keys,
  sample,
)

ALLOWED = byte_vocab_allowed()


def logits(seed=0, b=4):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(b, 260)) * 3, jnp.float32)


def draws(cfg, x, n=64):
  fn = jax.jit(lambda k: sample(x, k, jnp.asarray(ALLOWED), cfg))
  return np.stack([np.asarray(fn(row_keys(s, x.shape[0]))) for s in range(n)])  # n x B


def test_greedy_is_the_argmax_over_allowed_ids():
  x = logits().at[:, 1].set(100.0)  # BOS is never produced, however likely
  got = np.asarray(sample(x, row_keys(0, 4), jnp.asarray(ALLOWED), SamplingConfig()))
  assert got.tolist() == np.argmax(np.where(ALLOWED, x, -np.inf), axis=1).tolist()


def test_top_k_and_top_p_keep_only_their_ids():
  x = logits(1)
  masked = np.where(ALLOWED, np.asarray(x), -np.inf)
  top3 = np.argsort(-masked, axis=1)[:, :3]
  got = draws(SamplingConfig(temperature=1.0, top_k=3), x)
  for b in range(4):
    assert set(got[:, b]) <= set(top3[b]) and len(set(got[:, b])) > 1
  # top-p: the smallest most-likely set whose mass reaches p, computed in numpy.
  p = np.exp(masked - masked.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  got = draws(SamplingConfig(temperature=1.0, top_p=0.6), x)
  for b in range(4):
    order = np.argsort(-p[b])
    nucleus = order[: np.searchsorted(np.cumsum(p[b][order]), 0.6) + 1]
    assert set(got[:, b]) <= set(nucleus)
  greedy = draws(SamplingConfig(), x, 1)[0]
  for cfg in (
    SamplingConfig(temperature=1.0, top_k=1),
    SamplingConfig(temperature=1.0, top_p=1e-6),
  ):
    assert (draws(cfg, x, 8) == greedy).all()


def test_plain_sampling_follows_the_distribution():
  x = jnp.asarray(np.log([[0.0001] * 4 + [0.6, 0.3, 0.1] + [1e-9] * 253]), jnp.float32)
  got = draws(SamplingConfig(temperature=1.0), x, 400)[:, 0]
  freq = np.bincount(got, minlength=260)[4:7] / 400
  np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.08)


def test_log_prob_is_the_full_softmax():
  x = logits(2)
  ids = jnp.asarray([4, 100, 2, 259])
  want = np.asarray(jax.nn.log_softmax(x))[np.arange(4), np.asarray(ids)]
  np.testing.assert_allclose(np.asarray(log_prob(x, ids)), want, rtol=1e-6)


def test_row_keys():
  keys = np.asarray(row_keys(7, 3))
  assert len({tuple(k) for k in keys}) == 3
  np.testing.assert_array_equal(row_keys([5, 6], 2)[1], jax.random.PRNGKey(6))
  with pytest.raises(ValueError, match="seed"):
    row_keys([1], 2)


@pytest.mark.parametrize(
  "kw, match",
  [
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.01), "top_p"),
    (dict(top_k=-2), "top_k"),
  ],
)
def test_config_errors_name_the_argument(kw, match):
  with pytest.raises(ValueError, match=match):
    SamplingConfig(**kw)
