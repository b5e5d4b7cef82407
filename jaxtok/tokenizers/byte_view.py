"""Any tokenizer seen at byte level: every token id is an exact byte string.

ZeTT compares tokenizers on the bytes of the same text, so each tokenizer is
viewed as (a) a table id -> bytes and (b) an encoder that gives the real
tokenizer's ids wherever those ids spell the text, and is lossless always.

Rules (README, "Zero-Shot Tokenizer Transfer"):
* Dummy prefix. A tokenizer that puts a space before each text (SentencePiece's
  add_dummy_prefix, llama.cpp's BERT word starts, byte-level add_prefix_space)
  has `prefix == b" "`: `encode(text)` is its own ids, which spell
  `prefix + text`, and `target_bytes` counts the token after BOS one byte
  short, so bits per byte still divide by the bytes of the text (a document
  whose first token is the bare dummy space counts it as its one byte).
* Lossy tokenizers. Where the real ids do not spell the text (WordPiece drops
  whitespace and lowercases, unknown tokens, NFKC), the gaps and mismatching
  tokens are re-covered greedily with the longest tokens of the view.
* Special tokens. Text that spells a special token (`<|endoftext|>`) is text by
  default (`parse_special=False`, as llama.cpp's default and `transformers`'
  `split_special_tokens=True`): it gets the tokens any other text would, and
  only the model's own bos/eos/pad ids stand for document boundaries. With
  `parse_special=True` it maps to the special id, as `transformers` does by
  default (for prompts such as chat templates); the view is then not lossless,
  since a special id stands for no bytes.
* Every byte has a token: bytes the tokenizer lacks are appended as
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
    parse_special: bool = False,
  ):
    self.hf = tokenizer
    self.name = name
    self.parse_special = parse_special
    spec = json.loads(tokenizer.to_str())
    model = spec.get("model", {})
    self.kind = _kind(spec)
    prefix = model.get("continuing_subword_prefix") if model.get("type") == "WordPiece" else None
    vocab_map = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab_map.values()) + 1 if vocab_map else 0
    added = spec.get("added_tokens", [])
    special = {t["id"] for t in added if t.get("special")}
    literal = {t["id"] for t in added if not t.get("special") and not t.get("normalized")}
    unk = model.get("unk_token") if isinstance(model.get("unk_token"), str) else None
    unk_id = model.get("unk_id")
    vocab: list[bytes] = [b""] * size
    names: list[str] = [""] * size
    for tok, i in vocab_map.items():
      names[i] = tok
      if i in special or tok == unk or (unk_id is not None and i == unk_id):
        continue
      # An added token matched in the raw text stands for its own spelling.
      literal_bytes = tok.encode("utf-8") if i in literal else None
      vocab[i] = literal_bytes or token_string_to_bytes(tok, self.kind, prefix)
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
    self.prefix = self._dummy_prefix()

  def _dummy_prefix(self) -> bytes:
    """b" " when the tokenizer puts a space before every text, else b"" (probed)."""
    ids = self._hf_encode(["x"])[0].ids
    return b" " if b"".join(self.vocab[i] for i in ids) == b" x" else b""

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
    """int32 ids that spell `prefix + data` (b"" for empty data); no bos/eos added."""
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
    encs = self._hf_encode([p[2] for p in pieces])
    parts: list[list[tuple[int, np.ndarray]]] = [[] for _ in raw]
    for (d, start, text), enc in zip(pieces, encs):
      # The dummy prefix belongs before the text, not before a run after invalid bytes.
      lead = self.prefix if start == 0 else b""
      parts[d].append((start, self._align(text.encode("utf-8"), enc, lead)))
    for d, spans in enumerate(invalid):
      for start, end in spans:  # bytes that are not UTF-8 are single-byte tokens
        parts[d].append(
          (start, np.array([self.lookup[raw[d][i : i + 1]] for i in range(start, end)]))
        )
      if self.prefix and spans and spans[0][0] == 0:  # the text starts with invalid bytes
        parts[d].append((-1, np.array(self.greedy(self.prefix))))
    out = []
    for p in parts:
      p.sort(key=lambda x: x[0])
      out.append(np.concatenate([a for _, a in p]).astype(np.int32) if p else np.zeros(0, np.int32))
    return out

  def encode_pieces(self, pieces: Sequence[bytes]) -> list[np.ndarray]:
    """Ids that spell each piece exactly, without the dummy prefix: a token of another
    tokenizer in this one's tokens (the real tokenizer's, but for the first token)."""
    out = self.encode_batch(pieces)
    if not self.prefix:
      return out
    for k, ids in enumerate(out):
      if len(ids):  # the first token carries the prefix: re-cover the rest of its bytes
        rest = self.vocab[ids[0]][len(self.prefix) :]
        head = [self.lookup[rest]] if rest in self.lookup else self.greedy(rest)
        out[k] = np.concatenate([head, ids[1:]]).astype(np.int32)
    return out

  def _hf_encode(self, texts: list[str]):
    # Set per call: wrappers with different settings may share one HF tokenizer.
    self.hf.encode_special_tokens = not self.parse_special
    return self.hf.encode_batch(texts, add_special_tokens=False)

  def _align(self, text: bytes, enc, lead: bytes = b"") -> np.ndarray:
    """The real ids where they spell `lead + text`; gaps and mismatches re-covered greedily."""
    ids = enc.ids
    data = lead + text
    if b"".join([self.vocab[i] for i in ids]) == data:
      return np.asarray(ids, np.int32)  # the real tokenizer spells the text: the common case
    # Map char offsets to byte offsets (of `data`), then keep each token whose bytes sit at
    # the cursor, or at the start or end of its span (a word start's space may lie outside
    # its span); a special token the text spells is kept with parse_special.
    arr = np.frombuffer(text, np.uint8)
    char_to_byte = np.append(np.flatnonzero((arr & 0xC0) != 0x80), len(text)) + len(lead)
    at = lambda c: int(char_to_byte[min(c, len(char_to_byte) - 1)])
    out: list[int] = []
    pos = 0
    for i, (cs, ce) in zip(ids, enc.offsets):
      tb = self.vocab[i]
      if not tb:
        if self.parse_special and ce > cs and at(cs) >= pos:
          out += self.greedy(data[pos : at(cs)])
          out.append(i)
          pos = at(ce)
        continue
      bs, be = at(cs), at(ce)
      start = next(
        (s for s in (pos, bs, be - len(tb)) if s >= pos and data.startswith(tb, s)), None
      )
      if start is None:  # not spelled here (lowercased, normalized): re-cover up to its span
        start = max(pos, bs)
        tb = b""
      out += self.greedy(data[pos:start])
      if tb:
        out.append(i)
      pos = start + len(tb)
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
    """The bytes the ids spell (a whole encoded text: `prefix + text`)."""
    return b"".join(self.vocab[int(i)] for i in ids if 0 <= int(i) < len(self.vocab))

  def target_bytes(self, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """int32 bytes of the text each target token stands for (0 for padding): its length,
    less the dummy prefix for the first token of a document (the target of a BOS)."""
    n = np.where(targets >= 0, self.lengths[np.maximum(targets, 0)], 0)
    if self.prefix:
      # A first token that is the bare dummy space keeps 1 byte: tokens of 0 bytes (eos)
      # are left out of bits per byte, and its prediction belongs to the text's code length.
      first = (inputs == self.bos_id) & (n > 0)
      n = np.where(first, np.maximum(n - len(self.prefix), 1), n)
    return n.astype(np.int32)

  def with_target_bytes(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`batch` plus "target_bytes", so token models count bits over the bytes of the text."""
    return {**batch, "target_bytes": self.target_bytes(batch["inputs"], batch["targets"])}

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
      side = {"name": self.name, "bos": self.bos_id, "eos": self.eos_id, "pad": self.pad_id}
      json.dump({**side, "parse_special": self.parse_special}, f)


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
