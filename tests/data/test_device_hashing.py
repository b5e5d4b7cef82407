"""On-device hash n-gram ids equal the host's int64 ids (jaxtok/data/hashing.py) exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.data import device_hashing, hashing
from jaxtok.data.hashing import PRIMES

# Vocabularies: BLT's 500002, a prime, a power of two, tiny, and the largest allowed (2^24).
VOCABS = (500_002, 4093, 4096, 7, 1 << 24)


@pytest.mark.parametrize("vocab", VOCABS)
def test_rows_equal_host_for_every_hash_function(vocab):
  rng = np.random.default_rng(vocab % 1000)
  ids = rng.integers(0, 260, (3, 50)).astype(np.int32)
  ids[:, :4] = 259  # large ids where the window is left-padded with zeros
  seg = np.ones_like(ids)
  seg[1, 30:] = 2  # a second document: windows must not cross into it
  seg[2, :7] = 0  # left padding (ids there count as 0)
  ids[2, :7] = -1
  sizes = (1, 2, 3, 5, 8, 13)
  fns = len(PRIMES) if vocab == 500_002 else 2  # every prime once, in BLT's vocabulary
  kw = dict(ngram_sizes=sizes, n_hash_functions=fns, vocab=vocab)
  want = hashing.hash_ids(ids, seg, **kw)
  got = jax.jit(lambda x, s: device_hashing.hash_ids(x, s, **kw))(ids, seg)
  np.testing.assert_array_equal(np.asarray(got), want)


def test_top_bit_and_wraparound_cases_are_hit():
  """The sampled windows include negative int64 sums (top bit set), so that branch is checked."""
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 260, (64, 8)).astype(np.int64)
  h = np.zeros(64, np.int64)
  for j, p in enumerate(hashing.prime_powers(6, 8)):
    h += ids[:, j] * p
  assert (h < 0).any() and (h > 0).any()
  want = hashing.hash_ids(ids.astype(np.int32), ngram_sizes=(8,), n_hash_functions=7, vocab=500_002)
  got = device_hashing.hash_ids(
    jnp.asarray(ids, jnp.int32), ngram_sizes=(8,), n_hash_functions=7, vocab=500_002
  )
  np.testing.assert_array_equal(np.asarray(got), want)


def test_newest_byte_from_a_history_window_equals_the_row_hash():
  rng = np.random.default_rng(1)
  ids = rng.integers(4, 260, (2, 20)).astype(np.int32)
  kw = dict(ngram_sizes=(3, 4, 6), n_hash_functions=2, vocab=30_011)
  want = hashing.hash_ids(ids, **kw)
  width = 6
  hist = np.zeros((2, width), np.int32)
  for t in range(20):
    hist = np.concatenate([hist[:, 1:], ids[:, t : t + 1]], axis=1)
    got = device_hashing.newest_hash_ids(jnp.asarray(hist), **kw)
    np.testing.assert_array_equal(np.asarray(got), want[:, t])


@pytest.mark.parametrize(
  "kw, match",
  [
    (dict(ngram_sizes=(3,), vocab=(1 << 24) + 1), "hash vocab"),
    (dict(ngram_sizes=(0, 3), vocab=5), "n-gram sizes"),
    (dict(ngram_sizes=(129,), vocab=5), "n-gram sizes"),
  ],
)
def test_bad_arguments_are_named(kw, match):
  with pytest.raises(ValueError, match=match):
    device_hashing.hash_ids(jnp.zeros((1, 4), jnp.int32), **kw)
