"""BLT hash n-gram ids on device, equal to `jaxtok.data.hashing` (host, int64) bit for bit.

JAX runs with 64-bit types off, so the int64 polynomial of the reference is
computed exactly in uint32 pieces:

* the sum of `w_j * P^j` modulo 2^64 as four 16-bit limbs: a byte id is < 2^9
  and a limb < 2^16, so every product is < 2^25 and a sum of up to 128 of them
  fits in 32 bits before the carries are propagated;
* that unsigned residue u modulo V by Horner's rule over its eight bytes
  (r * 256 + byte < 2^32 while V <= 2^24);
* the int64 reading of u is u - 2^64 when its top bit is set; the floor modulo
  of that is (u mod V - 2^64 mod V) mod V, with 2^64 mod V a Python constant.

Ids must be in [0, 512) (byte ids are < 260; padding counts as 0, as on the host).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxtok.data.hashing import DEFAULT_NGRAMS, prime_powers

_LIMB_BITS = 16
_LIMB_MASK = (1 << _LIMB_BITS) - 1
MAX_VOCAB = 1 << 24
MAX_NGRAM = 128


def _power_limbs(hash_fn: int, n: int) -> np.ndarray:
  """[n, 4] uint32: the 16-bit limbs (low first) of P^j mod 2^64, j = 0 (oldest byte) .. n-1."""
  powers = prime_powers(hash_fn, n).view(np.uint64)
  return np.stack([(powers >> (16 * i)) & _LIMB_MASK for i in range(4)], axis=-1).astype(np.uint32)


def _check(ngram_sizes: Sequence[int], vocab: int) -> None:
  if not all(1 <= n <= MAX_NGRAM for n in ngram_sizes):
    raise ValueError(f"n-gram sizes must be in [1, {MAX_NGRAM}], got {tuple(ngram_sizes)}")
  if not 1 <= vocab <= MAX_VOCAB:
    raise ValueError(f"hash vocab must be in [1, 2^24] on device, got {vocab}")


def _window_hash(windows_XxN: jax.Array, hash_fn: int, vocab: int) -> jax.Array:
  """Hash buckets int32 [...] of n-gram windows [..., n] (oldest id first)."""
  n = windows_XxN.shape[-1]
  limbs = jnp.asarray(_power_limbs(hash_fn, n))  # n x 4
  w = windows_XxN.astype(jnp.uint32)
  acc = jnp.sum(w[..., :, None] * limbs, axis=-2, dtype=jnp.uint32)  # [..., 4], no carries yet
  # Carries between the 16-bit limbs; what leaves the top limb is the int64 wrap-around.
  out, carry = [], jnp.zeros(acc.shape[:-1], jnp.uint32)
  for i in range(4):
    s = acc[..., i] + carry
    out.append(s & _LIMB_MASK)
    carry = s >> _LIMB_BITS
  v = jnp.uint32(vocab)
  r = jnp.zeros_like(carry)
  for limb in reversed(out):  # u mod V, one byte at a time from the top
    r = ((r << 8) | (limb >> 8)) % v
    r = ((r << 8) | (limb & 0xFF)) % v
  negative = out[3] >> 15 == 1
  r = jnp.where(negative, (r + v - jnp.uint32((1 << 64) % vocab)) % v, r)
  return r.astype(jnp.int32)


def _tables(ngram_sizes: Sequence[int], n_hash_functions: int):
  """(hash function, n-gram size) of table k = f * len(ngram_sizes) + i, as on the host."""
  return [(f, n) for f in range(n_hash_functions) for n in ngram_sizes]


def hash_ids(
  ids_BxT: jax.Array,
  segment_ids_BxT: jax.Array | None = None,
  *,
  ngram_sizes: Sequence[int] = DEFAULT_NGRAMS,
  n_hash_functions: int = 1,
  vocab: int,
) -> jax.Array:
  """`jaxtok.data.hashing.hash_ids` on device: int32 [B, T, K] (windows stay in a document)."""
  _check(ngram_sizes, vocab)
  seg = jnp.ones_like(ids_BxT) if segment_ids_BxT is None else segment_ids_BxT
  x = jnp.where(seg > 0, jnp.maximum(ids_BxT, 0), 0)
  width = max(ngram_sizes)
  lagged = []  # lagged[l][b, t] = the id l positions before t, 0 across a document boundary
  for lag in range(width):
    same_doc = seg == jnp.pad(seg, ((0, 0), (lag, 0)))[:, : seg.shape[1]]
    lagged.append(jnp.where(same_doc, jnp.pad(x, ((0, 0), (lag, 0)))[:, : x.shape[1]], 0))
  windows = jnp.stack(lagged[::-1], axis=-1)  # B x T x width, oldest first
  return jnp.stack(
    [
      _window_hash(windows[..., width - n :], f, vocab)
      for f, n in _tables(ngram_sizes, n_hash_functions)
    ],
    axis=-1,
  )


def newest_hash_ids(
  history_BxW: jax.Array, *, ngram_sizes: Sequence[int], n_hash_functions: int = 1, vocab: int
) -> jax.Array:
  """Hash ids int32 [B, K] of the newest byte from the last W >= max(ngram_sizes) ids.

  `history_BxW` holds the ids oldest first, 0 before the start of the document.
  """
  _check(ngram_sizes, vocab)
  w = history_BxW.shape[1]
  if w < max(ngram_sizes):
    raise ValueError(f"history of {w} ids is shorter than the largest n-gram {max(ngram_sizes)}")
  return jnp.stack(
    [
      _window_hash(history_BxW[:, w - n :], f, vocab)
      for f, n in _tables(ngram_sizes, n_hash_functions)
    ],
    axis=-1,
  )
