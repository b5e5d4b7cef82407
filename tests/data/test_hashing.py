"""Hash n-gram ids against an independent pure-Python big-int implementation."""

import numpy as np
import pytest

from jaxtok.data import codec
from jaxtok.data.hashing import PRIMES, hash_ids, ngram_hash


def reference_hash(ids: list[int], i: int, n: int, prime: int, vocab: int) -> int:
  """Exact integers, then the int64 wrap-around and a floor modulo, by definition."""
  window = [0] * max(0, n - 1 - i) + ids[max(0, i - n + 1) : i + 1]
  exact = sum(w * prime**j for j, w in enumerate(window))
  wrapped = exact % 2**64
  if wrapped >= 2**63:
    wrapped -= 2**64
  return wrapped % vocab  # Python's % is a floor modulo


@pytest.mark.parametrize("n", range(2, 9))
def test_ngram_hash_matches_big_int_reference(n):
  rng = np.random.default_rng(n)
  ids = rng.integers(0, 260, (2, 40))
  ids[:, :3] = 255 + 4  # large ids at the start exercise the zero left padding too
  for f, vocab in [(0, 500_002), (1, 4093), (6, 30_000), (10, 7)]:
    got = ngram_hash(ids, n, f, vocab)
    for b in range(2):
      row = ids[b].tolist()
      want = [reference_hash(row, i, n, PRIMES[f], vocab) for i in range(40)]
      assert got[b].tolist() == want


def test_int64_wraparound_is_what_matters():
  # Without the wrap-around (exact integers) or with int32 the ids would differ.
  ids = np.asarray([[200, 250, 255, 259, 258, 257, 256, 255]])
  got = ngram_hash(ids, 8, 1, 500_002)[0, -1]
  exact = sum(w * PRIMES[1] ** j for j, w in enumerate(ids[0].tolist())) % 500_002
  assert got != exact


def test_hash_ids_layout_and_documents():
  a, b = codec.encode(b"hello world"), codec.encode(b"second doc")
  row = np.concatenate([a, b])[None]
  seg = np.asarray([[1] * len(a) + [2] * len(b)])
  out = hash_ids(row, seg, ngram_sizes=(3, 5), n_hash_functions=2, vocab=1000)
  assert out.shape == (1, len(a) + len(b), 4) and out.dtype == np.int32
  assert ((out >= 0) & (out < 1000)).all()
  # Table order: hash function major, n-gram size minor.
  np.testing.assert_array_equal(out[..., 3], ngram_hash(row, 5, 1, 1000, seg))
  # The second document hashes as if it were alone: no window reaches into the first.
  alone = hash_ids(b[None], ngram_sizes=(3, 5), n_hash_functions=2, vocab=1000)
  np.testing.assert_array_equal(out[0, len(a) :], alone[0])
  # Padding (segment 0, id -1) counts as 0.
  padded = hash_ids(
    np.concatenate([b, [-1, -1]])[None],
    np.asarray([[1] * len(b) + [0, 0]]),
    ngram_sizes=(3, 5),
    n_hash_functions=2,
    vocab=1000,
  )
  np.testing.assert_array_equal(padded[0, : len(b)], alone[0])


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="hash function 11"):
    ngram_hash(np.zeros((1, 4)), 3, 11, 10)
  with pytest.raises(ValueError, match="\\[B, T\\]"):
    ngram_hash(np.zeros(4), 3, 0, 10)
