import numpy as np
import pytest

from jaxtok.tokenizers import bpe
from jaxtok.tokenizers.byte_view import ByteTokenizer

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


def test_byte_view_reassembles_the_text_exactly(tok):
  view = ByteTokenizer(tok)
  assert view.vocab_size == view.hf_size  # no byte appended: the BPE has all 256
  for text in TEXTS[:3] + ["bytes \x7f\x80 and \U0001f600"]:
    ids = view.encode(text)
    assert ids.tolist() == tok.encode(text).ids  # lossless: the BPE's own segmentation
    assert view.decode(ids) == text.encode()
    assert view.lengths[ids].sum() == len(text.encode())


def test_every_byte_has_a_single_byte_token(tok):
  singles = {b for b in ByteTokenizer(tok).vocab[: tok.get_vocab_size()] if len(b) == 1}
  assert len(singles) == 256


def test_encoder_adds_bos_eos(tok):
  view = ByteTokenizer(tok)
  ids = view.make_encoder()(b"def foo")
  assert ids[0] == 1 and ids[-1] == 2 and ids.dtype == np.int32
  assert (view.bos_id, view.eos_id, view.pad_id) == (1, 2, 0)


def test_too_small_vocab_is_refused():
  with pytest.raises(ValueError, match="vocab_size"):
    bpe.train_bpe(TEXTS, 100)
