"""BLT hash n-gram ids, computed on the host in numpy int64.

For byte position i, n-gram size n and hash function f, BLT hashes the window
of the n byte ids ending at i (ids are byte + 4; positions before the start
are 0) with a rolling polynomial:

    h = (sum_j w_j * P_f ** j) mod V,   j = 0 for the oldest byte of the window,

where every product and sum wraps around in int64 and the final `mod` is a
floor modulo (non-negative). The wrap-around is part of the definition: exact
big-int arithmetic, or int32 (JAX's default), gives other ids. numpy's int64
array arithmetic wraps exactly like the reference, and `np.mod` is a floor mod.

jaxtok difference: a window never reaches across a document boundary inside a
packed row (those bytes count as 0, like the start of a row), so a document's
ids do not depend on what it was packed next to and match generation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRIMES = (
  1000000007,
  5915587277,
  1500450271,
  3267000013,
  5754853343,
  4093082899,
  9576890767,
  3628273133,
  2860486313,
  5463458053,
  3367900313,
)
DEFAULT_NGRAMS = (3, 4, 5, 6, 7, 8)


def _wrap_int64(x: int) -> int:
  x %= 1 << 64
  return x - (1 << 64) if x >= 1 << 63 else x


def prime_powers(hash_fn: int, n: int) -> np.ndarray:
  """[P^0, ..., P^(n-1)] as int64 with wrap-around (what repeated int64 products give)."""
  if not 0 <= hash_fn < len(PRIMES):
    raise ValueError(f"hash function {hash_fn} out of range: BLT defines {len(PRIMES)} primes")
  p = PRIMES[hash_fn]
  return np.array([_wrap_int64(p**j) for j in range(n)], dtype=np.int64)


def ngram_hash(
  ids_BxT: np.ndarray, n: int, hash_fn: int, vocab: int, segment_ids_BxT: np.ndarray | None = None
) -> np.ndarray:
  """Hash bucket in [0, vocab) of the n-gram ending at every position, int32 [B, T]."""
  if n < 1:
    raise ValueError(f"n-gram size must be >= 1, got {n}")
  if vocab < 1:
    raise ValueError(f"hash vocabulary must be >= 1, got {vocab}")
  x = np.asarray(ids_BxT, dtype=np.int64)
  if x.ndim != 2:
    raise ValueError(f"ids must be [B, T], got shape {x.shape}")
  seg = np.ones(x.shape, np.int64) if segment_ids_BxT is None else np.asarray(segment_ids_BxT)
  x = np.where(seg > 0, np.maximum(x, 0), 0)  # padding (id -1 / segment 0) counts as 0
  powers = prime_powers(hash_fn, n)
  h = np.zeros(x.shape, np.int64)
  for j in range(n):
    lag = n - 1 - j  # window element j is the byte `lag` positions back
    w = np.zeros_like(x)
    if lag == 0:
      w = x
    elif lag < x.shape[1]:
      same_doc = seg[:, lag:] == seg[:, :-lag]
      w[:, lag:] = np.where(same_doc, x[:, :-lag], 0)
    h += w * powers[j]  # int64 wrap-around, as in the reference
  return np.mod(h, vocab).astype(np.int32)


def hash_ids(
  ids_BxT: np.ndarray,
  segment_ids_BxT: np.ndarray | None = None,
  *,
  ngram_sizes: Sequence[int] = DEFAULT_NGRAMS,
  n_hash_functions: int = 1,
  vocab: int,
) -> np.ndarray:
  """All hash ids of a batch, int32 [B, T, K], K = n_hash_functions * len(ngram_sizes).

  Table k = f * len(ngram_sizes) + i holds n-gram size ngram_sizes[i] under hash function f.
  """
  return np.stack(
    [
      ngram_hash(ids_BxT, n, f, vocab, segment_ids_BxT)
      for f in range(n_hash_functions)
      for n in ngram_sizes
    ],
    axis=-1,
  )
