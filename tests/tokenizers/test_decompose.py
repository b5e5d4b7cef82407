"""Decomposition of target tokens into base-tokenizer ids."""

import numpy as np
import pytest
from tokenizers import normalizers

from jaxtok.tokenizers import decompose as dec
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.targets import train_tokenizer

TEXT = [
  "def tokenize(text):\n    return [t for t in text.split() if t]\n",
  "The quick brown fox jumps over the lazy dog; naïve café, Straße.",
  "class Tokenizer:\n    def __init__(self, vocab):\n        self.vocab = vocab\n",
] * 30


@pytest.fixture(scope="module")
def base():
  return ByteTokenizer(train_tokenizer("bpe", TEXT, 320))


@pytest.fixture(scope="module", params=["bpe", "unigram", "wordpiece"])
def target(request):
  return ByteTokenizer(train_tokenizer(request.param, TEXT[::-1], 500))


def test_tokens_in_the_base_vocab_decompose_to_themselves(base):
  ids = dec.decompose(base, base)
  content = np.flatnonzero(base.lengths > 0)
  assert np.array_equal(ids[content, 0], content)
  assert (ids[content, 1:] == -1).all()


def test_decomposition_spells_the_token_in_base_tokens(target, base):
  max_len = 7
  ids = dec.decompose(target, base, max_len)
  checked = 0
  for t, row in enumerate(ids):
    if not target.vocab[t]:
      continue
    row = row[row >= 0]
    spelled = b"".join(base.vocab[i] for i in row)
    full = base.encode(target.vocab[t])
    if len(full) <= max_len:
      assert spelled == target.vocab[t]
      checked += 1
    else:  # cut to the first max_len base tokens, as ZeTT does
      assert len(row) == max_len and target.vocab[t].startswith(spelled)
  assert checked > 100


def test_max_len_cuts(target, base):
  short = dec.decompose(target, base, 2)
  assert short.shape == (target.vocab_size, 2)
  long = dec.decompose(target, base, 7)
  assert np.array_equal(short, long[:, :2])
  with pytest.raises(ValueError, match="max_len"):
    dec.decompose(target, base, 0)


def test_specials_map_to_the_base_specials(target, base):
  ids = dec.decompose(target, base)
  assert ids[target.bos_id, 0] == base.bos_id and ids[target.eos_id, 0] == base.eos_id
  copies = dec.special_copies(target, base)
  assert copies[target.eos_id] == base.eos_id
  assert (copies >= 0).sum() <= 3


def test_shared_ids_are_exact_byte_matches(target, base):
  shared = dec.shared_ids(target, base)
  for t in np.flatnonzero(shared >= 0):
    assert target.vocab[t] == base.vocab[shared[t]] != b""
  singles = [t for t, b in enumerate(target.vocab) if len(b) == 1]
  assert (shared[singles] >= 0).all()  # every byte exists in both


def _one_role_token(texts, vocab_size):
  """A BPE whose single special <|endoftext|> is bos, eos and pad (GPT-2's layout)."""
  hf = train_tokenizer("bpe", texts, vocab_size)
  hf.add_special_tokens(["<|endoftext|>"])
  return ByteTokenizer(hf, bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>")


def test_a_special_with_several_roles_copies_the_base_bos(base):
  target = _one_role_token(TEXT[::-1], 500)
  assert target.bos_id == target.eos_id == target.pad_id
  assert len({base.bos_id, base.eos_id, base.pad_id}) == 3
  copies = dec.special_copies(target, base)
  assert copies[target.bos_id] == base.bos_id
  assert dec.decompose(target, base)[target.bos_id].tolist() == [base.bos_id] + [-1] * 6


def test_base_with_a_dummy_prefix_decomposes_without_it():
  """A SentencePiece-style base puts a space before each text; a token's decomposition must
  still spell the token's own bytes."""
  hf = train_tokenizer("unigram", TEXT, 400)
  hf.normalizer = normalizers.Sequence(
    [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
  )
  spm = ByteTokenizer(hf)
  assert spm.prefix == b" "
  target = ByteTokenizer(train_tokenizer("bpe", TEXT[::-1], 500))
  ids = dec.decompose(target, spm, 16)
  for t in np.flatnonzero(target.lengths > 0):
    row = ids[t][ids[t] >= 0]
    assert b"".join(spm.vocab[i] for i in row) == target.vocab[t], target.vocab[t]
