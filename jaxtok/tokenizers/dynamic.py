"""Dynamic tokenization (Feher et al., 2024): batch-level BPE merges + hypernetwork embeddings.

A batch is first tokenized by the base tokenizer; then, like BPE training
but inside the batch only, the most frequent adjacent pair of tokens is
merged into a new token, repeatedly (`n_merges` times, or until no pair occurs
twice). Pairs never merge across a word start (a token beginning with
whitespace or punctuation) or a newline, so merged tokens stay inside words.
The embeddings of merged tokens come from the ZeTT hypernetwork, computed on
the fly and cached by their bytes across batches. The LM then reads (and
predicts) the shorter sequence: its output softmax is over the base vocabulary
plus the batch's merged tokens.

`jaxtok.eval.dynamic` scores it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.decompose import decompose_bytes

_WORD_START = frozenset(b" \t\n\r.,;:!?()[]{}\"'`=+-*/\\<>|&^%$#@~")


def _mergeable(left: bytes, right: bytes) -> bool:
  return bool(left) and bool(right) and right[0] not in _WORD_START and b"\n" not in left


def batch_merges(
  seqs: Sequence[np.ndarray], vocab: Sequence[bytes], n_merges: int
) -> tuple[list[np.ndarray], list[bytes], list[tuple[int, int]]]:
  """Learns and applies up to `n_merges` batch-level BPE merges to `seqs` (ids into `vocab`).

  Returns the merged sequences (new ids are len(vocab), len(vocab)+1, ...), the
  bytes of the new tokens and the merged id pairs, in merge order.
  """
  table = list(vocab)
  seqs = [np.asarray(s, np.int64).copy() for s in seqs]
  new: list[bytes] = []
  pairs: list[tuple[int, int]] = []
  for _ in range(n_merges):
    counts: dict[tuple[int, int], int] = {}
    for s in seqs:
      for a, b in zip(s[:-1].tolist(), s[1:].tolist()):
        if _mergeable(table[a], table[b]):
          counts[(a, b)] = counts.get((a, b), 0) + 1
    if not counts:
      break
    (a, b), n = max(counts.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
    if n < 2:
      break
    merged = table[a] + table[b]
    new_id = len(table)
    table.append(merged)
    new.append(merged)
    pairs.append((a, b))
    seqs = [_replace_pair(s, a, b, new_id) for s in seqs]
  return [s.astype(np.int32) for s in seqs], new, pairs


def apply_merges(
  seqs: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], vocab_size: int
) -> list[np.ndarray]:
  """Applies merges learned elsewhere (`batch_merges` pairs) in order, like BPE encoding."""
  seqs = [np.asarray(s, np.int64) for s in seqs]
  for k, (a, b) in enumerate(pairs):
    seqs = [_replace_pair(s, a, b, vocab_size + k) for s in seqs]
  return [s.astype(np.int32) for s in seqs]


def _replace_pair(s: np.ndarray, a: int, b: int, new_id: int) -> np.ndarray:
  out, i, n = [], 0, len(s)
  while i < n:
    if i + 1 < n and s[i] == a and s[i + 1] == b:
      out.append(new_id)
      i += 2
    else:
      out.append(int(s[i]))
      i += 1
  return np.asarray(out, np.int64)


class EmbeddingCache:
  """Hypernetwork embeddings of merged tokens, computed once per byte string."""

  def __init__(self, predict, base: ByteTokenizer, max_len: int, chunk: int = 256):
    """`predict(decomp [chunk, max_len]) -> (e_in [chunk, D], e_out [chunk, D])` (numpy)."""
    self._predict = predict
    self._base = base
    self._max_len = max_len
    self._chunk = chunk
    self._rows: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    self.misses = 0

  def get(self, pieces: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    todo = [p for p in dict.fromkeys(pieces) if p not in self._rows]
    self.misses += len(todo)
    for s in range(0, len(todo), self._chunk):
      part = todo[s : s + self._chunk]
      ids = decompose_bytes(part, self._base, self._max_len)
      ids = np.pad(ids, ((0, self._chunk - len(part)), (0, 0)), constant_values=-1)
      e_in, e_out = self._predict(ids)
      for i, p in enumerate(part):
        self._rows[p] = (e_in[i], e_out[i])
    if not pieces:
      return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return (
      np.stack([self._rows[p][0] for p in pieces]),
      np.stack([self._rows[p][1] for p in pieces]),
    )
