"""The numpy unigram tokenizer sampler (ZeTT's per-step tokenizer distribution)."""

import collections

import numpy as np
import pytest

from jaxtok.tokenizers import sampler as sampler_lib

DOCS = [
  b"def tokenize(text):\n    return [t for t in text.split() if t]\n",
  "Grüße aus München, naïve café — 東京 and ünïcode".encode(),
  b"class Sampler:\n    def sample(self, rng):\n        return rng.integers(10)\n",
  b"import numpy as np\nx = np.zeros((3, 4))\nprint(x.sum())\n",
] * 8


def _sampler(**kw):
  s = sampler_lib.TokenizerSampler(
    min_vocab=kw.pop("min_vocab", 300), max_vocab=kw.pop("max_vocab", 400), window=2, **kw
  )
  s.add(DOCS[:16])
  s.add(DOCS[16:])
  return s


def test_substring_counts_match_a_slow_count():
  words = [b"hello", b"help", b"he", b"\xc3\xbc\xc3\xbc"]
  weights = [3, 2, 5, 1]
  pieces, freq = sampler_lib.substring_counts(words, weights, max_len=4)
  got = dict(zip(pieces, freq))
  ref = collections.Counter()
  for w, n in zip(words, weights):
    for i in range(len(w)):
      for j in range(i + 2, min(len(w), i + 4) + 1):
        ref[w[i:j]] += n
  assert got == dict(ref)


def test_sample_is_a_valid_tokenizer_covering_every_byte():
  tok = _sampler().sample(np.random.default_rng(0))
  assert 300 <= tok.vocab_size <= 400
  assert {b for b in tok.vocab if len(b) == 1} == {bytes([i]) for i in range(256)}
  rng = np.random.default_rng(1)
  for data in [bytes(range(256)), rng.integers(0, 256, 500, dtype=np.uint8).tobytes(), *DOCS[:4]]:
    ids = tok.encode(data)
    assert tok.decode(ids) == data
  assert len(tok.encode(DOCS[2])) < len(DOCS[2]) / 1.5  # it has learnt multi-byte pieces
  assert tok.vocab[tok.bos_id] == b"" and tok.vocab[tok.eos_id] == b""


def test_sampling_is_deterministic_per_seed_and_varies_across_seeds():
  s = _sampler(noise_std=1.0)
  a = s.sample(np.random.default_rng(7)).vocab
  b = s.sample(np.random.default_rng(7)).vocab
  c = s.sample(np.random.default_rng(8)).vocab
  assert a == b
  assert set(a) != set(c)


def test_window_slides():
  s = sampler_lib.TokenizerSampler(min_vocab=300, max_vocab=300, window=1)
  s.add([b"aaaa bbbb aaaa bbbb"] * 20)
  s.add([b"xyzw xyzw qrst qrst"] * 20)  # pushes the first batch out
  tok = s.sample(np.random.default_rng(0))
  assert b"xyzw" in tok.lookup or b" xyzw" in tok.lookup
  assert b"aaaa" not in tok.lookup


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="min_vocab"):
    sampler_lib.TokenizerSampler(min_vocab=100, max_vocab=400)
  with pytest.raises(ValueError, match="no text"):
    sampler_lib.TokenizerSampler(min_vocab=300, max_vocab=400).sample(np.random.default_rng(0))
