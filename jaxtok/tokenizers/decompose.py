"""Decompose every token of a target tokenizer into ids of the base tokenizer.

ZeTT's hypernetwork sees a new token through the base model's own embeddings:
the token's bytes are tokenized by the base tokenizer (at most `max_len`
base tokens; longer decompositions are cut, as in the paper). A token whose
bytes are a base token decomposes to exactly that token. Special tokens
(bos/eos/pad) map to the base model's tokens of the same role.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxtok.tokenizers.byte_view import ByteTokenizer

DEFAULT_MAX_LEN = 7


def decompose_bytes(
  pieces: Sequence[bytes], base: ByteTokenizer, max_len: int = DEFAULT_MAX_LEN
) -> np.ndarray:
  """int32 [len(pieces), max_len]: base ids of each byte string, -1 padded."""
  if max_len < 1:
    raise ValueError(f"decomposition max_len must be >= 1, got {max_len}")
  out = np.full((len(pieces), max_len), -1, np.int32)
  todo = []
  for i, b in enumerate(pieces):
    j = base.lookup.get(b)
    if j is not None:
      out[i, 0] = j
    elif b:
      todo.append(i)
  if todo:
    for i, ids in zip(todo, base.encode_batch([pieces[i] for i in todo])):
      ids = ids[:max_len]
      out[i, : len(ids)] = ids
  return out


def decompose(
  target: ByteTokenizer, base: ByteTokenizer, max_len: int = DEFAULT_MAX_LEN
) -> np.ndarray:
  """int32 [target.vocab_size, max_len]: each target token as base ids (-1 padded)."""
  out = decompose_bytes(target.vocab, base, max_len)
  for mine, theirs in (
    (target.pad_id, base.pad_id),
    (target.bos_id, base.bos_id),
    (target.eos_id, base.eos_id),
  ):
    out[mine] = -1
    out[mine, 0] = theirs
  return out


def special_copies(target: ByteTokenizer, base: ByteTokenizer) -> np.ndarray:
  """int32 [target vocab]: the base id whose embedding a target special token copies, else -1."""
  out = np.full(target.vocab_size, -1, np.int32)
  out[target.pad_id] = base.pad_id
  out[target.bos_id] = base.bos_id
  out[target.eos_id] = base.eos_id
  return out


def shared_ids(target: ByteTokenizer, base: ByteTokenizer) -> np.ndarray:
  """int32 [target vocab]: the base id with exactly the same bytes, else -1 (lexical overlap)."""
  return np.array([base.lookup.get(b, -1) if b else -1 for b in target.vocab], np.int32)
