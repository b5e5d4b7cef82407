"""Target tokenizers for zero-shot transfer, and the text they are trained and scored on.

Zero-shot transfer is evaluated on tokenizers the hypernetwork never saw:
byte-level BPE (GPT-2 style), SentencePiece-style Unigram (metaspace, no
byte fallback: bytes it lacks are covered by the byte view) and BERT-style
WordPiece (drops whitespace; the byte view restores it), trained here with HF
`tokenizers`, and real vocabularies.

Target specs:
  "bpe:N" | "unigram:N" | "wordpiece:N"  trained on a text spec
  "gguf:<name>"                           a llama.cpp vocabulary (gpt-2, llama-bpe, qwen2, ...)
  "<path>"                                any tokenizer.json / .model / .gguf
Text specs:
  a corpus name for `load_corpus` ("stdlib", "files:...", a tfds name),
  or "deb:<package>[:<glob>]" (a Debian text package; held out by hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from jaxtok import paths
from jaxtok.data import corpora
from jaxtok.tokenizers import bpe, sources
from jaxtok.tokenizers.byte_view import ByteTokenizer, sidecar_path
from jaxtok.tokenizers.load import load_tokenizer

KINDS = ("bpe", "unigram", "wordpiece")


def _texts(texts: Iterable[bytes | str]):
  return (t.decode("utf-8", errors="replace") if isinstance(t, bytes) else t for t in texts)


def train_tokenizer(kind: str, texts: Iterable[bytes | str], vocab_size: int) -> Tokenizer:
  """A `kind` tokenizer ("bpe", "unigram" or "wordpiece") with about `vocab_size` tokens."""
  if kind == "bpe":
    return bpe.train_bpe(texts, vocab_size)
  if kind == "unigram":
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="never")
    trainer = trainers.UnigramTrainer(
      vocab_size=vocab_size,
      special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
      unk_token="<unk>",
      max_piece_length=16,
      show_progress=False,
    )
  elif kind == "wordpiece":
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
      vocab_size=vocab_size,
      special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
      show_progress=False,
    )
  else:
    raise ValueError(f"tokenizer kind {kind!r}: expected one of {KINDS}")
  tok.train_from_iterator(_texts(texts), trainer)
  return tok


class Unavailable(RuntimeError):
  """A target or text source that cannot be had here (offline, package missing)."""


def _held_out(doc: bytes, fraction: float = 0.1) -> bool:
  h = hashlib.blake2b(doc[:4096], digest_size=8).digest()
  return int.from_bytes(h, "little") / 2**64 < fraction


def text_source(spec: str, split: str, config, *, max_docs: int, doc_bytes: int) -> list[bytes]:
  """Up to `max_docs` documents (each cut to `doc_bytes`) of one split of a text spec."""
  fetch = bool(config.compare.get("fetch", True)) if "compare" in config else True
  if spec.startswith("deb:"):
    pkg, _, pattern = spec[4:].partition(":")
    docs = sources.debian_texts(pkg, pattern or "**/*", fetch=fetch)
    if docs is None:
      raise Unavailable(sources.last_error.get(f"deb:{pkg}", f"Debian package {pkg} unavailable"))
    docs = [x for x in docs if _held_out(x) == (split == "validation")]
  else:
    d = config.data
    corpus = corpora.corpus_for(d, split, spec)
    docs = [corpus[i] for i in range(min(len(corpus), max_docs))]
  docs = [x[:doc_bytes] for x in docs if x.strip()][:max_docs]
  if not docs:
    raise Unavailable(f"text source {spec!r} has no {split} documents")
  return docs


def mixed_corpus(specs: Sequence[str], config, *, docs_per_source: int, doc_bytes: int) -> str:
  """A JSON-lines file of the train documents of several text specs, interleaved (cached by
  the specs): `load_corpus("files:<path>")` reads it, so a run trains on several languages.
  Each source gives `docs_per_source` documents spread evenly over it, each cut to
  `doc_bytes`; a Debian source's held-out documents stay out (see `text_source`)."""
  key = hashlib.blake2b(f"{list(specs)}|{docs_per_source}|{doc_bytes}".encode(), digest_size=8)
  path = os.path.join(sources.cache_dir(), "zett_text", f"mix-{key.hexdigest()}.jsonl")
  if os.path.exists(path):
    return path
  parts = []
  for spec in specs:
    docs = text_source(spec, "train", config, max_docs=1 << 30, doc_bytes=doc_bytes)
    pick = np.unique(np.linspace(0, len(docs) - 1, min(docs_per_source, len(docs))).astype(int))
    parts.append([docs[i] for i in pick])
  rows = [p[i] for i in range(max(map(len, parts))) for p in parts if i < len(p)]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False) as f:
    for doc in rows:
      f.write(json.dumps({"text": doc.decode("utf-8", errors="replace")}) + "\n")
  os.replace(f.name, path)
  return path


def save_atomic(tok: ByteTokenizer, path: str) -> None:
  """Saves into a temporary folder, then moves the sidecar and (last) the tokenizer in place."""
  if paths.is_url(path):  # a gs:// workdir: saved locally, then each file written whole
    with tempfile.TemporaryDirectory() as tmp:
      local = os.path.join(tmp, posixpath.basename(path))
      tok.save(local)
      paths.copy_atomic(sidecar_path(local), sidecar_path(path))
      paths.copy_atomic(local, path)
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
    tmp_path = os.path.join(tmp, os.path.basename(path))
    tok.save(tmp_path)
    os.replace(sidecar_path(tmp_path), sidecar_path(path))
    os.replace(tmp_path, path)


def make_target(spec: str, config, train_text: str | None = None) -> ByteTokenizer:
  """The target tokenizer of a spec (trained ones are cached by spec and text).

  `config` (a ZeTT config) names the text that "bpe:N"-style targets are trained on; without
  one, only files and "gguf:<name>" vocabularies (fetched when absent) can be made.
  """
  kind, _, arg = spec.partition(":")
  if kind in KINDS and config is None:
    raise ValueError(
      f"target {spec!r} is trained on text: pass --hypernet (its config names the text) "
      "or a tokenizer file"
    )
  if kind in KINDS:
    source = train_text or config.data.name
    c = config.compare if "compare" in config else None
    n_docs = c.target_docs if c is not None else 200
    key = hashlib.blake2b(f"{spec}|{source}|{n_docs}".encode(), digest_size=8).hexdigest()
    path = os.path.join(sources.cache_dir(), "zett_targets", f"{kind}{arg}-{key}.json")
    if not os.path.exists(path):
      docs = text_source(source, "train", config, max_docs=n_docs, doc_bytes=1 << 20)
      tok = ByteTokenizer(train_tokenizer(kind, docs, int(arg)), name=f"{spec}@{source}")
      save_atomic(tok, path)
    return load_tokenizer(path)
  if kind == "gguf":
    if config is None:
      fetch = True  # asked for by name on the command line
    else:
      fetch = bool(config.compare.get("fetch", True)) if "compare" in config else False
    path = sources.llama_cpp_vocab(arg, fetch=fetch)
    if path is None:
      raise Unavailable(sources.last_error.get(f"vocab:{arg}", f"vocab {arg} unavailable"))
    return load_tokenizer(path)
  return load_tokenizer(spec)
