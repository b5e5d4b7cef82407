"""Decompose every token of a target tokenizer into ids of the base tokenizer.

ZeTT's hypernetwork sees a new token through the base model's own embeddings:
the token's bytes are tokenized by the base tokenizer (at most `max_len`
base tokens; longer decompositions are cut, as in the paper). A token whose
bytes are a base token decomposes to exactly that token.

Special tokens copy the base model's token of the same role; a target token
with several roles takes the first of bos, eos, pad (GPT-2's <|endoftext|> is
all three: it copies the base's BOS). The base's roles are resolved once, by
`jaxtok.train.zett.load_base_spec`, whatever the entry point.
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
    for i, ids in zip(todo, base.encode_pieces([pieces[i] for i in todo])):
      ids = ids[:max_len]
      out[i, : len(ids)] = ids
  return out


def decompose(
  target: ByteTokenizer, base: ByteTokenizer, max_len: int = DEFAULT_MAX_LEN
) -> np.ndarray:
  """int32 [target.vocab_size, max_len]: each target token as base ids (-1 padded)."""
  out = decompose_bytes(target.vocab, base, max_len)
  copies = special_copies(target, base)
  rows = np.flatnonzero(copies >= 0)
  out[rows] = -1
  out[rows, 0] = copies[rows]
  return out


def special_copies(target: ByteTokenizer, base: ByteTokenizer) -> np.ndarray:
  """int32 [target vocab]: the base id whose embedding a target special token copies, else -1
  (a token with several roles: bos before eos before pad)."""
  out = np.full(target.vocab_size, -1, np.int32)
  for mine, theirs in (
    (target.pad_id, base.pad_id),
    (target.eos_id, base.eos_id),
    (target.bos_id, base.bos_id),  # written last: it wins
  ):
    out[mine] = theirs
  return out


def shared_ids(target: ByteTokenizer, base: ByteTokenizer) -> np.ndarray:
  """int32 [target vocab]: the base id with exactly the same bytes, else -1 (lexical overlap)."""
  return np.array([base.lookup.get(b, -1) if b else -1 for b in target.vocab], np.int32)
