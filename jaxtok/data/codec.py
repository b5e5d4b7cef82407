"""BLT byte codec: token id = byte value + OFFSET, with four special ids below.

The id layout follows the Byte Latent Transformer (Pagnoni et al., 2024) so
that checkpoints and numbers are comparable: BOE=0, BOS=1, EOS=2, BPE delimiter
=3, padding=-1 (never a valid embedding index, so it must be masked), 260 ids.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BOE_ID = 0
BOS_ID = 1
EOS_ID = 2
BPE_DELIM_ID = 3
PAD_ID = -1
OFFSET = 4
VOCAB_SIZE = 256 + OFFSET  # 260


def encode(
  data: bytes | bytearray | memoryview | str,
  *,
  add_bos: bool = True,
  add_eos: bool = True,
) -> npt.NDArray[np.int32]:
  """Encodes bytes (or a str, as UTF-8) into int32 ids `byte + OFFSET`."""
  if isinstance(data, str):
    data = data.encode("utf-8")
  body = np.frombuffer(data, dtype=np.uint8)
  n = body.size + int(add_bos) + int(add_eos)
  ids = np.empty(n, dtype=np.int32)
  start = int(add_bos)
  if add_bos:
    ids[0] = BOS_ID
  if add_eos:
    ids[-1] = EOS_ID
  # Widen before adding so 255 + 4 cannot wrap around in uint8.
  np.add(body, OFFSET, out=ids[start : start + body.size], dtype=np.int32)
  return ids


def decode(ids: npt.ArrayLike) -> bytes:
  """Returns the bytes of `ids`, dropping special ids (< OFFSET) and PAD.

  Exact inverse of `encode` for any byte string (invalid UTF-8 and NUL too).
  """
  ids = np.asarray(ids)
  if ids.size == 0:
    return b""
  ids = ids.reshape(-1)
  if ids.dtype.kind not in "iu":
    raise TypeError(f"decode expects integer ids, got dtype {ids.dtype}")
  content = ids[ids >= OFFSET]
  if content.size and int(content.max()) >= VOCAB_SIZE:
    raise ValueError(f"id {int(content.max())} is outside the byte vocabulary [0, {VOCAB_SIZE})")
  return (content - OFFSET).astype(np.uint8).tobytes()


def decode_text(ids: npt.ArrayLike) -> str:
  """Decodes ids to str; invalid UTF-8 becomes U+FFFD (lossy, for display)."""
  return decode(ids).decode("utf-8", errors="replace")
