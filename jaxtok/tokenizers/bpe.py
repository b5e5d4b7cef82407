"""Byte-level BPE tokenizers trained with HF `tokenizers`, and their byte view.

Token-level baselines (BLT's BPE transformer, patch-level training) train a
byte-level BPE on the training split. Models read it through its exact byte
view (`byte_view.ByteTokenizer`): every token stands for an exact byte string
and any bytes, valid UTF-8 or not, encode losslessly, so bits-per-byte are
over the same bytes as byte-level models.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, BOS, EOS = "<pad>", "<s>", "</s>"  # ids 0, 1, 2: the byte codec's layout
SPECIALS = (PAD, BOS, EOS)


@functools.cache
def _unicode_to_byte() -> dict[str, int]:
  """Inverse of the GPT-2 byte -> printable-character table used by ByteLevel."""
  keep = [
    *range(ord("!"), ord("~") + 1),
    *range(ord("¡"), ord("¬") + 1),
    *range(ord("®"), ord("ÿ") + 1),
  ]
  chars, extra = {}, 0
  for b in range(256):
    if b in keep:
      chars[chr(b)] = b
    else:
      chars[chr(256 + extra)] = b
      extra += 1
  return chars


def train_bpe(texts: Iterable[bytes | str], vocab_size: int) -> Tokenizer:
  """A byte-level BPE with `vocab_size` entries (<pad>, <s>, </s> first)."""
  if vocab_size < 256 + len(SPECIALS):
    raise ValueError(
      f"BPE vocab_size={vocab_size} must be >= {256 + len(SPECIALS)} (all bytes + specials)"
    )
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    special_tokens=list(SPECIALS),
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tok.train_from_iterator((_as_text(t) for t in texts), trainer)
  return tok


def _as_text(t: bytes | str) -> str:
  # HF tokenizers train on str: invalid UTF-8 becomes U+FFFD in the training text only
  # (encoding goes through the byte view, which keeps every byte).
  return t.decode("utf-8", errors="replace") if isinstance(t, bytes) else t


def get_or_train(corpus, vocab_size: int, cache_dir: str, max_docs: int = 2000) -> str:
  """Path of a BPE trained on (up to `max_docs` of) `corpus`, cached by content."""
  n = min(len(corpus), max_docs)
  h = hashlib.blake2b(digest_size=8)
  h.update(f"{corpus.name}|{corpus.split}|{len(corpus)}|{n}|{vocab_size}".encode())
  for i in range(0, n, max(1, n // 16)):
    h.update(corpus[i][:4096])
  path = os.path.join(cache_dir, f"bpe{vocab_size}-{h.hexdigest()}.json")
  if not os.path.exists(path):
    os.makedirs(cache_dir, exist_ok=True)
    tok = train_bpe((corpus[i] for i in range(n)), vocab_size)
    tmp = f"{path}.tmp{os.getpid()}"
    tok.save(tmp)
    os.replace(tmp, path)  # atomic: a concurrent or killed run never sees half a file
  return path


def load(path: str) -> Tokenizer:
  if not os.path.exists(path):
    raise FileNotFoundError(f"tokenizer file {path} does not exist")
  return Tokenizer.from_file(path)
