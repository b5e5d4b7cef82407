"""Any tokenizer seen at byte level: every token id is an exact byte string.

ZeTT compares tokenizers on the bytes of the same text, so each tokenizer is
viewed as (a) a table id -> bytes and (b) an encoder whose tokens always
concatenate back to the input bytes exactly. Hugging Face tokenizers segment
the text; where a tokenizer is not lossless (WordPiece drops whitespace and
lowercases, SentencePiece adds a dummy prefix, unknown tokens, NFKC) the gaps
and mismatching tokens are re-covered greedily with the longest tokens of the
view. Every byte has a token: bytes the tokenizer lacks are appended as
single-byte tokens after its own ids, so ids of the original tokenizer keep
their meaning (a base model's embedding rows stay aligned).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from jaxtok.tokenizers.bpe import _unicode_to_byte

_HEX_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>", "[CLS]", "<|im_start|>")
EOS_NAMES = ("</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "[SEP]", "<|im_end|>")
PAD_NAMES = ("<pad>", "[PAD]", "<|pad|>", "<|endoftext|>", "<unk>", "[UNK]")


def _kind(spec: dict) -> str:
  """How token strings map to bytes: "byte_level", "metaspace" or "plain"."""
  text = json.dumps({k: spec.get(k) for k in ("pre_tokenizer", "decoder")})
  if '"ByteLevel"' in text:
    return "byte_level"
  if "\u2581" in text or '"Metaspace"' in text or '"ByteFallback"' in text:
    return "metaspace"
  return "plain"


@functools.cache
def _byte_level_table() -> dict[int, int]:
  """str.translate table: GPT-2 byte-level character -> the byte it stands for."""
  return {ord(c): b for c, b in _unicode_to_byte().items()}


def token_string_to_bytes(token: str, kind: str, subword_prefix: str | None = None) -> bytes:
  """The bytes a token string stands for, under a tokenizer's conventions."""
  if kind == "byte_level":
    try:
      return token.translate(_byte_level_table()).encode("latin-1")
    except UnicodeEncodeError:
      return token.encode("utf-8")  # an added token written as plain text
  m = _HEX_BYTE.match(token)
  if m:  # SentencePiece byte fallback
    return bytes([int(m.group(1), 16)])
  if subword_prefix and token.startswith(subword_prefix) and len(token) > len(subword_prefix):
    token = token[len(subword_prefix) :]
  if kind == "metaspace":
    token = token.replace("\u2581", " ")
  return token.encode("utf-8")


@dataclasses.dataclass
class Specials:
  bos: int
  eos: int
  pad: int


class ByteTokenizer:
  """A tokenizer whose ids are exact byte strings and whose encoding is lossless.

  `vocab[i]` is the bytes of id i (b"" for special/control tokens). Ids
  [0, hf_size) are the wrapped tokenizer's; then single bytes it lacks; then
  special tokens it lacks (bos/eos/pad are always present).
  """

  def __init__(
    self,
    tokenizer: Tokenizer,
    *,
    bos: int | str | None = None,
    eos: int | str | None = None,
    pad: int | str | None = None,
    name: str = "",
  ):
    self.hf = tokenizer
    self.name = name
    spec = json.loads(tokenizer.to_str())
    model = spec.get("model", {})
    self.kind = _kind(spec)
    prefix = model.get("continuing_subword_prefix") if model.get("type") == "WordPiece" else None
    vocab_map = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab_map.values()) + 1 if vocab_map else 0
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    unk = model.get("unk_token") if isinstance(model.get("unk_token"), str) else None
    unk_id = model.get("unk_id")
    vocab: list[bytes] = [b""] * size
    names: list[str] = [""] * size
    for tok, i in vocab_map.items():
      names[i] = tok
      if i in special or tok == unk or (unk_id is not None and i == unk_id):
        continue
      vocab[i] = token_string_to_bytes(tok, self.kind, prefix)
    self.hf_size = size
    have = {b for b in vocab if len(b) == 1}
    for b in range(256):
      if bytes([b]) not in have:
        vocab.append(bytes([b]))
        names.append(f"<byte 0x{b:02X}>")
    self.vocab = vocab
    self.names = names
    self.specials = Specials(
      bos=self._special(bos, BOS_NAMES, "<s>"),
      eos=self._special(eos, EOS_NAMES, "</s>"),
      pad=self._special(pad, PAD_NAMES, "<pad>"),
    )
    self._finish()

  def _special(self, given: int | str | None, candidates: Sequence[str], fallback: str) -> int:
    """Resolves a special token by id, by name, or by the usual names; appends it if absent."""
    if isinstance(given, int):
      if given == len(self.vocab):  # a special this view appended when it was saved
        self.vocab.append(b"")
        self.names.append(fallback)
        return given
      if not 0 <= given < len(self.vocab):
        raise ValueError(f"special token id {given} outside the vocabulary of {len(self.vocab)}")
      return given
    lookup = {n: i for i, n in enumerate(self.names) if n and not self.vocab[i]}
    for n in [given] if given else candidates:
      if n in lookup:
        return lookup[n]
    name = given or fallback
    self.vocab.append(b"")
    self.names.append(name)
    return len(self.vocab) - 1

  def _finish(self) -> None:
    self.lengths = np.array([len(b) for b in self.vocab], np.int32)
    self.lookup: dict[bytes, int] = {}
    for i, b in enumerate(self.vocab):  # the first id wins for duplicate byte strings
      if b and b not in self.lookup:
        self.lookup[b] = i
    self.max_token_bytes = int(self.lengths.max())
    self._hf_to_view = np.arange(self.hf_size, dtype=np.int32)

  # --- properties --------------------------------------------------------------------------

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  @property
  def bos_id(self) -> int:
    return self.specials.bos

  @property
  def eos_id(self) -> int:
    return self.specials.eos

  @property
  def pad_id(self) -> int:
    return self.specials.pad

  def __repr__(self) -> str:
    return f"ByteTokenizer({self.name or self.kind!r}, vocab={self.vocab_size})"

  # --- encoding ----------------------------------------------------------------------------

  def encode(self, data: bytes | str) -> np.ndarray:
    """int32 ids whose bytes concatenate to `data` exactly (no specials added)."""
    return self.encode_batch([data])[0]

  def encode_batch(self, docs: Sequence[bytes | str]) -> list[np.ndarray]:
    raw = [d.encode("utf-8") if isinstance(d, str) else bytes(d) for d in docs]
    pieces: list[tuple[int, int, str]] = []  # (doc, byte start, valid UTF-8 text)
    invalid: list[list[tuple[int, int]]] = [[] for _ in raw]
    for d, data in enumerate(raw):
      for start, end, ok in _utf8_runs(data):
        if ok:
          pieces.append((d, start, data[start:end].decode("utf-8")))
        else:
          invalid[d].append((start, end))
    encs = self.hf.encode_batch([p[2] for p in pieces], add_special_tokens=False)
    parts: list[list[tuple[int, np.ndarray]]] = [[] for _ in raw]
    for (d, start, text), enc in zip(pieces, encs):
      parts[d].append((start, self._align(text.encode("utf-8"), enc)))
    for d, spans in enumerate(invalid):
      for start, end in spans:  # bytes that are not UTF-8 are single-byte tokens
        parts[d].append(
          (start, np.array([self.lookup[raw[d][i : i + 1]] for i in range(start, end)]))
        )
    out = []
    for p in parts:
      p.sort(key=lambda x: x[0])
      out.append(np.concatenate([a for _, a in p]).astype(np.int32) if p else np.zeros(0, np.int32))
    return out

  def _align(self, data: bytes, enc) -> np.ndarray:
    ids = enc.ids
    if b"".join([self.vocab[i] for i in ids]) == data:
      return np.asarray(ids, np.int32)  # lossless tokenizer: the common, fast case
    # Map char offsets to byte offsets, then keep each token whose bytes sit at the cursor.
    arr = np.frombuffer(data, np.uint8)
    char_start = np.flatnonzero((arr & 0xC0) != 0x80)
    char_to_byte = np.append(char_start, len(data))
    out: list[int] = []
    pos = 0
    for i, (cs, _) in zip(ids, enc.offsets):
      tb = self.vocab[i]
      if not tb:
        continue
      if data.startswith(tb, pos):
        out.append(i)
        pos += len(tb)
        continue
      bs = int(char_to_byte[min(cs, len(char_to_byte) - 1)])
      if bs > pos:
        out += self.greedy(data[pos:bs])
        pos = bs
        if data.startswith(tb, pos):
          out.append(i)
          pos += len(tb)
    out += self.greedy(data[pos:])
    return np.asarray(out, np.int32)

  def greedy(self, data: bytes) -> list[int]:
    """Longest-match tokens for `data` (used for the bytes a tokenizer did not cover)."""
    out, i, n = [], 0, len(data)
    while i < n:
      for k in range(min(self.max_token_bytes, n - i), 0, -1):
        j = self.lookup.get(data[i : i + k])
        if j is not None:
          out.append(j)
          i += k
          break
    return out

  def decode(self, ids: Sequence[int] | np.ndarray) -> bytes:
    return b"".join(self.vocab[int(i)] for i in ids if 0 <= int(i) < len(self.vocab))

  def make_encoder(self):
    """bytes -> int32 ids with bos ... eos, the layout PackedBatches expects."""
    bos, eos = self.bos_id, self.eos_id

    def encode(doc: bytes) -> np.ndarray:
      return np.concatenate([[bos], self.encode(doc), [eos]]).astype(np.int32)

    return encode

  # --- files -------------------------------------------------------------------------------

  def save(self, path: str) -> None:
    """Writes the HF tokenizer to `path` and the view's specials next to it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.hf.save(path)
    with open(sidecar_path(path), "w") as f:
      json.dump({"name": self.name, "bos": self.bos_id, "eos": self.eos_id, "pad": self.pad_id}, f)


def sidecar_path(path: str) -> str:
  root = path[:-5] if path.endswith(".json") else path
  return root + ".view.json"


def _utf8_runs(data: bytes) -> list[tuple[int, int, bool]]:
  """Splits `data` into maximal valid UTF-8 runs and invalid bytes: (start, end, valid)."""
  try:
    data.decode("utf-8")
    return [(0, len(data), True)] if data else []
  except UnicodeDecodeError:
    pass
  runs, start, i = [], 0, 0
  while i < len(data):
    try:
      data[i:].decode("utf-8")
      break
    except UnicodeDecodeError as e:
      bad = i + e.start
      if bad > start:
        runs.append((start, bad, True))
      runs.append((bad, bad + (e.end - e.start), False))
      i = start = bad + (e.end - e.start)
  if start < len(data):
    runs.append((start, len(data), True))
  return runs
