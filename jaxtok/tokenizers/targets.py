"""Train target tokenizers of the three common families with HF `tokenizers`.

Zero-shot transfer is evaluated on tokenizers the hypernetwork never saw:
byte-level BPE (GPT-2 style), SentencePiece-style Unigram (metaspace, no
byte fallback: bytes it lacks are covered by the byte view) and BERT-style
WordPiece (drops whitespace; the byte view restores it).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from jaxtok.tokenizers import bpe

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
