"""Load any tokenizer as a `ByteTokenizer`: HF tokenizer.json, SentencePiece
`.model`, or the vocabulary of a GGUF file (vocab-only or a full model).

Formats other than tokenizer.json are rebuilt as HF `tokenizers` objects:
GGUF "gpt2" vocabularies are byte-level BPEs (tokens + merges, pre-tokenizer
chosen from `tokenizer.ggml.pre`); "llama"/"gemma4" are SentencePiece BPEs
(merges given, or derived from the piece scores as SentencePiece does:
the pair whose merged piece scores highest merges first); "t5" (SentencePiece
unigram) becomes a Unigram; "bert" a WordPiece. SentencePiece `.model` files
are read with a small protobuf parser, so `sentencepiece` is not needed.
"""

from __future__ import annotations

import json
import posixpath
import struct
from collections.abc import Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from jaxtok import hub, paths
from jaxtok.tokenizers import gguf_file
from jaxtok.tokenizers.byte_view import ByteTokenizer, sidecar_path

# Pre-tokenizer regexes of the GGUF `tokenizer.ggml.pre` families (public llama.cpp names).
_LLAMA3 = (
  r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
  r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
_PRE_REGEX = {
  "llama-bpe": _LLAMA3,
  "llama3": _LLAMA3,
  "smaug-bpe": _LLAMA3,
  "dbrx": _LLAMA3,
  "qwen2": _QWEN2,
  "qwen35": _QWEN2,
  "deepseek-llm": _QWEN2,
  "deepseek-coder": _QWEN2,
}
_IGNORE_MERGES = {"llama-bpe", "llama3"}  # llama.cpp: Llama-3 vocabularies only
_DIGIT_SPLIT = {"smollm", "starcoder", "refact", "falcon", "command-r"}

# GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4


class TokenizerLoadError(ValueError):
  """A tokenizer file that is missing, of an unknown format, or unsupported."""


def load_tokenizer(path: str, *, parse_special: bool | None = None, **specials) -> ByteTokenizer:
  """A ByteTokenizer from a tokenizer.json, a directory holding one, a `.model`, a `.gguf`,
  or `hf:<hub id or directory>` (a hub id resolves through huggingface_hub's cache).

  `specials` (bos=, eos=, pad=; ids or names) override the defaults: a sidecar
  written by `ByteTokenizer.save`, the GGUF metadata, or the usual names.
  `parse_special` (see `ByteTokenizer`; default: the sidecar's, else False).
  """
  if hub.is_spec(path):
    path = hub.resolve(path, patterns=("tokenizer.json", "tokenizer_config.json"))
  path = paths.expand(path, "tokenizer")  # a URL: a gs:// workdir's own tokenizer.json
  if paths.isdir(path):
    path = paths.join(path, "tokenizer.json")
  if not paths.exists(path):
    raise TokenizerLoadError(f"tokenizer {path} does not exist")
  name = posixpath.basename(path)
  if paths.is_url(path) and not path.endswith(".json"):
    raise TokenizerLoadError(f"{path}: at a URL, only a tokenizer.json is read")
  if path.endswith(".gguf"):
    hf, meta = gguf_tokenizer(path)
  elif path.endswith(".model"):
    hf, meta = spm_tokenizer(path)
  else:
    try:
      hf = (
        Tokenizer.from_str(paths.read_text(path))
        if paths.is_url(path)
        else Tokenizer.from_file(path)
      )
    except Exception as e:
      raise TokenizerLoadError(
        f"{path} is not a HF tokenizer.json, SentencePiece .model or .gguf file: {e}"
      ) from e
    meta = {}
    side = sidecar_path(path)
    if paths.exists(side):
      saved = json.loads(paths.read_text(side))
      name = saved.get("name") or name
      meta = {k: saved[k] for k in ("bos", "eos", "pad", "parse_special") if k in saved}
  meta.update({k: v for k, v in specials.items() if v is not None})
  if parse_special is not None:
    meta["parse_special"] = parse_special
  return ByteTokenizer(hf, name=name, **meta)


# --- GGUF -----------------------------------------------------------------------------------


def _gguf_fields(path: str) -> dict:
  try:
    out = gguf_file.read_metadata(path, "tokenizer.ggml.")
  except gguf_file.GGUFError as e:
    raise TokenizerLoadError(str(e)) from e
  if "tokens" not in out:
    raise TokenizerLoadError(f"{path} holds no tokenizer (no tokenizer.ggml.tokens)")
  return out


def gguf_tokenizer(path: str) -> tuple[Tokenizer, dict]:
  """(HF tokenizer, {bos, eos, pad}) from the tokenizer.ggml.* metadata of a GGUF file."""
  f = _gguf_fields(path)
  tokens: list[str] = list(f["tokens"])
  types = list(f.get("token_type") or [1] * len(tokens))
  kind = f.get("model")
  if kind == "gpt2":
    merges = [tuple(m.split(" ", 1)) for m in f.get("merges", [])]
    vocab = {t: i for i, t in enumerate(tokens)}
    ignore_merges = f.get("pre") in _IGNORE_MERGES  # a pre-token that is a token stays whole
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = _byte_level_pre(f.get("pre"))
    tok.decoder = decoders.ByteLevel()
  elif kind in ("llama", "gemma4"):
    merges = [tuple(m.split(" ", 1)) for m in f.get("merges", [])] or _spm_merges(
      tokens, list(f["scores"]), types
    )
    tok = _spm_bpe(tokens, merges, types, add_prefix=bool(f.get("add_space_prefix", True)))
  elif kind == "t5":
    tok = _spm_unigram(
      tokens, list(f["scores"]), types, f.get("unknown_token_id"), bool(f.get("add_space_prefix"))
    )
  elif kind == "bert":
    tok = _wordpiece_from_gguf(tokens, types, f.get("unknown_token_id"))
  else:
    raise TokenizerLoadError(
      f"{path}: GGUF tokenizer model {kind!r} is not supported (gpt2, llama, gemma4, t5, bert)"
    )
  _add_specials(tok, tokens, types)
  meta = {
    "bos": f.get("bos_token_id"),
    "eos": f.get("eos_token_id"),
    "pad": f.get("padding_token_id"),
  }
  return tok, {k: int(v) for k, v in meta.items() if v is not None}


def _byte_level_pre(pre: str | None):
  if pre in _PRE_REGEX:
    return pre_tokenizers.Sequence(
      [
        pre_tokenizers.Split(Regex(_PRE_REGEX[pre]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
      ]
    )
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if pre == "falcon":  # llama.cpp: punctuation runs, then GPT-2's regex, then digit triples
    return pre_tokenizers.Sequence(
      [
        pre_tokenizers.Punctuation(behavior="contiguous"),
        byte_level,
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated"),
      ]
    )
  if pre in _DIGIT_SPLIT:
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
  return byte_level


def _add_specials(tok: Tokenizer, tokens: Sequence[str], types: Sequence[int]) -> None:
  """Control/unknown tokens as special tokens; user-defined ones (MPT's runs of spaces,
  chat markers) as plain added tokens: llama.cpp matches both in the raw text first."""
  special = [
    AddedToken(t, special=True, normalized=False)
    for t, ty in zip(tokens, types)
    if ty in (_CONTROL, _UNKNOWN) and t
  ]
  if special:
    tok.add_special_tokens(special)
  user = [
    AddedToken(t, special=False, normalized=False)
    for t, ty in zip(tokens, types)
    if ty == _USER_DEFINED and t
  ]
  if user:
    tok.add_tokens(user)


def _spm_merges(tokens: Sequence[str], scores: Sequence[float], types: Sequence[int]):
  """BPE merges of a SentencePiece BPE: (a, b) ranks by the score of the piece a+b."""
  normal = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty not in (_CONTROL, 6)}
  found = []
  for piece, i in normal.items():
    for k in range(1, len(piece)):
      a, b = piece[:k], piece[k:]
      if a in normal and b in normal:
        found.append((-scores[i], i, normal[a], normal[b], a, b))
  found.sort()
  return [(a, b) for *_, a, b in found]


def _metaspace_normalizer(add_prefix: bool):
  parts = [normalizers.Prepend("\u2581")] if add_prefix else []
  return normalizers.Sequence([*parts, normalizers.Replace(" ", "\u2581")])


def _spm_decoder():
  return decoders.Sequence(
    [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
  )


def _spm_bpe(tokens, merges, types, *, add_prefix: bool) -> Tokenizer:
  unk = next((t for t, ty in zip(tokens, types) if ty == _UNKNOWN), None)
  tok = Tokenizer(
    models.BPE(
      {t: i for i, t in enumerate(tokens)},
      merges,
      unk_token=unk,
      byte_fallback=True,
      fuse_unk=True,
      ignore_merges=False,
    )
  )
  tok.normalizer = _metaspace_normalizer(add_prefix)
  tok.decoder = _spm_decoder()
  return tok


def _spm_unigram(tokens, scores, types, unk_id, add_prefix: bool) -> Tokenizer:
  has_bytes = any(ty == 6 for ty in types)
  vocab = [(t, float(s)) for t, s in zip(tokens, scores)]
  if unk_id is None:
    unk_id = next((i for i, ty in enumerate(types) if ty == _UNKNOWN), None)
  tok = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=has_bytes))
  tok.normalizer = _metaspace_normalizer(add_prefix)
  tok.decoder = _spm_decoder()
  return tok


def _wordpiece_from_gguf(tokens, types, unk_id) -> Tokenizer:
  # llama.cpp writes WordPiece word starts as "▁word" (the space before the word) and
  # continuations without "##"; each word gets its "▁" as llama.cpp's tokenizer does, so the
  # byte view reads a word start as " word" and the ids spell spaced text exactly.
  vocab = {}
  for i, (t, ty) in enumerate(zip(tokens, types)):
    key = ("##" + t if not t.startswith("\u2581") else t) if ty == 1 else t
    vocab.setdefault(key, i)
  unk = tokens[unk_id] if unk_id is not None else "[UNK]"
  tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, continuing_subword_prefix="##"))
  # An uncased vocabulary (no ASCII capitals) means the text was lowercased.
  lowercase = not any(any("A" <= c <= "Z" for c in t) for t, ty in zip(tokens, types) if ty == 1)
  tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
  tok.pre_tokenizer = pre_tokenizers.Sequence(
    [
      pre_tokenizers.BertPreTokenizer(),
      pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False),
    ]
  )
  tok.decoder = decoders.Sequence(
    [decoders.Replace("##", ""), decoders.Metaspace(prepend_scheme="always"), decoders.Fuse()]
  )
  return tok


# --- SentencePiece .model -------------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
  out = shift = 0
  while True:
    b = buf[i]
    i += 1
    out |= (b & 0x7F) << shift
    if b < 0x80:
      return out, i
    shift += 7


def _fields(buf: bytes):
  """(field number, wire type, value) of a protobuf message, one level deep."""
  i = 0
  while i < len(buf):
    key, i = _varint(buf, i)
    num, wire = key >> 3, key & 7
    if wire == 0:
      val, i = _varint(buf, i)
    elif wire == 1:
      val, i = buf[i : i + 8], i + 8
    elif wire == 2:
      n, i = _varint(buf, i)
      val, i = buf[i : i + n], i + n
    elif wire == 5:
      val, i = buf[i : i + 4], i + 4
    else:
      raise TokenizerLoadError(f"unsupported protobuf wire type {wire}")
    yield num, wire, val


def read_spm_model(path: str) -> dict:
  """The parts of a SentencePiece ModelProto that define tokenization."""
  with open(path, "rb") as fh:
    buf = fh.read()
  pieces, scores, types = [], [], []
  out = {"model_type": 1, "byte_fallback": False, "add_dummy_prefix": True}
  try:
    for num, _, val in _fields(buf):
      if num == 1:  # SentencePiece {piece=1, score=2, type=3}
        piece, score, ty = "", 0.0, 1
        for n2, _, v2 in _fields(val):
          if n2 == 1:
            piece = v2.decode("utf-8")
          elif n2 == 2:
            score = struct.unpack("<f", v2)[0]
          elif n2 == 3:
            ty = v2
        pieces.append(piece)
        scores.append(score)
        types.append(ty)
      elif num == 2:  # TrainerSpec {model_type=3, byte_fallback=35}
        for n2, _, v2 in _fields(val):
          if n2 == 3:
            out["model_type"] = v2
          elif n2 == 35:
            out["byte_fallback"] = bool(v2)
      elif num == 3:  # NormalizerSpec {add_dummy_prefix=3}
        for n2, _, v2 in _fields(val):
          if n2 == 3:
            out["add_dummy_prefix"] = bool(v2)
  except (IndexError, UnicodeDecodeError, struct.error) as e:
    raise TokenizerLoadError(f"{path} is not a SentencePiece model: {e}") from e
  if not pieces:
    raise TokenizerLoadError(f"{path} is not a SentencePiece model (no pieces)")
  out.update(pieces=pieces, scores=scores, types=types)
  return out


def spm_tokenizer(path: str) -> tuple[Tokenizer, dict]:
  m = read_spm_model(path)
  tokens, scores, types = m["pieces"], m["scores"], m["types"]
  if m["model_type"] == 1:  # UNIGRAM
    tok = _spm_unigram(tokens, scores, types, None, m["add_dummy_prefix"])
  elif m["model_type"] == 2:  # BPE
    tok = _spm_bpe(
      tokens, _spm_merges(tokens, scores, types), types, add_prefix=m["add_dummy_prefix"]
    )
  else:
    raise TokenizerLoadError(
      f"{path}: SentencePiece model_type {m['model_type']} (word/char) is not supported"
    )
  _add_specials(tok, tokens, types)
  return tok, {}
