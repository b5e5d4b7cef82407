import numpy as np
import pytest

from jaxtok.tokenizers import bpe

TEXTS = [
  "def foo(x):\n    return x + 1\n",
  "héllo wörld — ünïcode ✓ 日本語",
  "tabs\tand\x00nul",
] * 20


@pytest.fixture(scope="module")
def tok():
  return bpe.train_bpe(TEXTS, 320)


def test_specials_take_the_codec_ids(tok):
  assert [tok.token_to_id(s) for s in bpe.SPECIALS] == [0, 1, 2]


def test_token_bytes_reassemble_the_text_exactly(tok):
  table = bpe.token_bytes(tok)
  for text in TEXTS[:3] + ["bytes \x7f\x80 and \U0001f600"]:
    ids = tok.encode(text).ids
    assert b"".join(table[i] for i in ids) == text.encode()
    assert bpe.token_byte_lengths(tok)[ids].sum() == len(text.encode())


def test_every_byte_has_a_single_byte_token(tok):
  lengths = bpe.token_byte_lengths(tok)
  singles = {bytes(b) for b, n in zip(bpe.token_bytes(tok), lengths) if n == 1}
  assert len(singles) == 256


def test_encoder_adds_bos_eos(tok):
  enc = bpe.make_encoder(tok)
  ids = enc(b"def foo")
  assert ids[0] == 1 and ids[-1] == 2 and ids.dtype == np.int32


def test_too_small_vocab_is_refused():
  with pytest.raises(ValueError, match="vocab_size"):
    bpe.train_bpe(TEXTS, 100)
