"""Byte-level views of BPE, Unigram, WordPiece, SentencePiece and GGUF tokenizers."""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from jaxtok.eval import tokenizer_bpb
from jaxtok.tokenizers import sources
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import TokenizerLoadError, load_tokenizer
from jaxtok.tokenizers.targets import KINDS, train_tokenizer

TRAIN = [
  "Hello world, this is English text with some code: def f(x): return x * 2",
  "Grüße aus München! Ça va? ¿Qué tal? Straße, Übermut, naïve café.",
  "Русский текст и немного слов. Ελληνικά γράμματα.",
  "日本語のテキストと中文文本。한국어 문장도 있습니다.",
  "    indented\n\tline with tabs\n\n  trailing spaces   ",
] * 20
HELD_OUT = [
  "Völlig neue Wörter: Ψυχή, 東京都, señor, naïveté — CAPS and MiXeD case!",
  "  leading and   multiple   spaces\n\n\n\ttabs\r\nwindows newlines",
  "emoji 😀🦙 and rare symbols ∮ ⊕ ℵ and nul \x00 bytes",
]


@pytest.fixture(scope="module", params=KINDS)
def view(request):
  return ByteTokenizer(train_tokenizer(request.param, TRAIN, 400), name=request.param)


def test_round_trip_on_multilingual_text(view):
  for text in HELD_OUT + TRAIN[:5]:
    ids = view.encode(text)
    assert view.decode(ids) == text.encode()
    assert view.lengths[ids].sum() == len(text.encode())


def test_invalid_utf8_bytes_round_trip(view):
  data = b"valid \xff\xfe then \xc3 broken \xe6\x97 and ok \xe6\x97\xa5"
  assert view.decode(view.encode(data)) == data


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_on_any_text(text):
  for kind in KINDS:
    v = _VIEWS[kind]
    assert v.decode(v.encode(text)) == text.encode()


_VIEWS = {k: ByteTokenizer(train_tokenizer(k, TRAIN, 400)) for k in KINDS}


def test_every_byte_has_a_single_byte_token(view):
  singles = {b for b in view.vocab if len(b) == 1}
  assert singles == {bytes([i]) for i in range(256)}


def test_specials_stand_for_no_bytes(view):
  for i in (view.bos_id, view.eos_id, view.pad_id):
    assert view.vocab[i] == b""
  enc = view.make_encoder()(b"abc")
  assert enc[0] == view.bos_id and enc[-1] == view.eos_id


def test_lossless_tokenizer_keeps_its_own_segmentation():
  v = _VIEWS["bpe"]  # byte-level BPE is lossless: the view must not change its tokens
  for text in HELD_OUT:
    assert v.encode(text).tolist() == v.hf.encode(text, add_special_tokens=False).ids


def test_wordpiece_view_restores_whitespace_and_case():
  v = _VIEWS["wordpiece"]
  ids = v.encode("Hello   World")
  pieces = [v.vocab[i] for i in ids]
  assert b"".join(pieces) == b"Hello   World"
  assert b"Hello" in pieces or b"H" in pieces  # case kept (BertNormalizer lowercase=False)


def test_save_and_load_keep_the_specials(tmp_path):
  v = ByteTokenizer(train_tokenizer("wordpiece", TRAIN, 300), bos="[CLS]", eos="[SEP]")
  path = str(tmp_path / "tok.json")
  v.save(path)
  back = load_tokenizer(path)
  assert (back.bos_id, back.eos_id, back.pad_id) == (v.bos_id, v.eos_id, v.pad_id)
  assert back.vocab == v.vocab


def test_save_and_load_keep_specials_the_view_appended(tmp_path):
  hf = Tokenizer(models.BPE())
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  alphabet = pre_tokenizers.ByteLevel.alphabet()
  hf.train_from_iterator(TRAIN, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet))
  v = ByteTokenizer(hf)  # no <s>, </s> or <pad> of its own: the view appends them
  assert min(v.bos_id, v.eos_id, v.pad_id) >= v.hf_size
  path = str(tmp_path / "tok.json")
  v.save(path)
  back = load_tokenizer(path)
  assert (back.bos_id, back.eos_id, back.pad_id) == (v.bos_id, v.eos_id, v.pad_id)
  assert back.vocab == v.vocab and back.vocab_size == v.vocab_size


def test_missing_and_garbage_files_give_clear_errors(tmp_path):
  with pytest.raises(TokenizerLoadError, match="does not exist"):
    load_tokenizer(str(tmp_path / "nope.json"))
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(TokenizerLoadError, match="not a HF tokenizer.json"):
    load_tokenizer(str(bad))
  bad_gguf = tmp_path / "bad.gguf"
  bad_gguf.write_bytes(b"NOTGGUF" + b"\0" * 32)
  with pytest.raises(TokenizerLoadError, match="not a GGUF file"):
    load_tokenizer(str(bad_gguf))


# --- SentencePiece .model files, checked against sentencepiece itself ----------------------


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_model_matches_sentencepiece(tmp_path, model_type):
  spm = pytest.importorskip("sentencepiece", reason="sentencepiece (test extra) not installed")
  corpus = tmp_path / "corpus.txt"
  stdlib = [open(m.__file__, encoding="utf-8").read() for m in (json, os, pytest)]
  corpus.write_text("\n".join(TRAIN + stdlib))
  prefix = str(tmp_path / model_type)
  spm.SentencePieceTrainer.train(
    input=str(corpus),
    model_prefix=prefix,
    vocab_size=800,
    model_type=model_type,
    byte_fallback=True,
    normalization_rule_name="identity",
    character_coverage=1.0,
    minloglevel=2,
  )
  ref = spm.SentencePieceProcessor(model_file=prefix + ".model")
  view = load_tokenizer(prefix + ".model")
  texts = ["Hello world, this is text", "Grüße aus München", "naïve café 東京", "x = f(y)"]
  for text in texts:
    assert view.hf.encode(text, add_special_tokens=False).ids == ref.encode(text)
    assert view.encode(text).tolist() == ref.encode(text)  # the "\u2581" token kept
    assert view.decode(view.encode(text)) == b" " + text.encode()  # the dummy prefix


# --- real vocabularies from the llama-cpp-python sdist -------------------------------------

# Every vocabulary of the sdist that comes with llama.cpp's own test cases (.inp/.out).
WITH_CASES = [
  "bert-bge",
  "command-r",
  "deepseek-coder",
  "deepseek-llm",
  "falcon",
  "gemma-4",
  "gpt-2",
  "llama-bpe",
  "llama-spm",
  "mpt",
  "phi-3",
  "qwen2",
  "qwen35",
  "refact",
  "starcoder",
]


def _cached_vocab(name):
  path = sources.llama_cpp_vocab(name)
  if path is None:
    pytest.skip(f"missing artefact: llama.cpp vocab {name}: {sources.last_error['vocab:' + name]}")
  return path


def _spelled(view, text):
  return view.prefix + text.encode() if text else b""


@pytest.mark.parametrize("name", WITH_CASES)
def test_byte_view_tokenizes_as_llama_cpp(name):
  """The view's ids are llama.cpp's wherever llama.cpp's ids spell the text (all cases but
  BERT's lowercased / whitespace-dropping ones), and the view is lossless on every case."""
  path = _cached_vocab(name)
  cases = sources.llama_cpp_vocab_cases(path)
  assert cases, f"no llama.cpp test cases next to {path}"
  view = load_tokenizer(path)
  lossy = 0
  for text, expected in cases:
    assert view.hf.encode(text, add_special_tokens=False).ids == expected, text
    ids = view.encode(text)
    assert view.decode(ids) == _spelled(view, text), text
    if view.decode(expected) == _spelled(view, text):
      assert ids.tolist() == expected, text
    else:
      lossy += 1
  # Only a WordPiece vocabulary (lowercases, drops whitespace) has cases it cannot spell.
  assert lossy == 0 or view.hf.to_str().count('"WordPiece"'), name


@pytest.mark.parametrize("name", ["llama-spm", "phi-3"])
def test_sentencepiece_view_keeps_the_dummy_prefix_token(name):
  view = load_tokenizer(_cached_vocab(name))
  assert view.prefix == b" "
  ids = view.encode("Hello world")
  assert [view.names[i] for i in ids] == ["\u2581Hello", "\u2581world"]
  # Bits per byte divide by the text's bytes, not the dummy prefix's.
  docs = [b"Hello world", b"  two spaces", "\u00c4pfel \u2581 und Birnen".encode()]
  batches = tokenizer_bpb.eval_batches(view, docs, seq_len=8, batch_size=2)
  assert sum(int(b["target_bytes"].sum()) for b in batches) == sum(map(len, docs))


def test_bert_word_starts_carry_their_space():
  view = load_tokenizer(_cached_vocab("bert-bge"))
  ids = view.encode("the cat sat")
  assert view.decode(ids) == b" the cat sat" and len(ids) == 3
  assert view.decode(view.encode("the cat  sat")) == b" the cat  sat"


def test_sidecar_is_json(tmp_path):
  v = _VIEWS["unigram"]
  v.save(str(tmp_path / "u.json"))
  side = json.loads((tmp_path / "u.view.json").read_text())
  assert side["bos"] == v.bos_id and os.path.exists(tmp_path / "u.json")
  assert np.array_equal(load_tokenizer(str(tmp_path / "u.json")).lengths, v.lengths)


# --- text that spells a special token ------------------------------------------------------


def _with_endoftext():
  hf = train_tokenizer("bpe", TRAIN + ["if a <b and c <d: pass"] * 20, 400)  # " <" is a token
  hf.add_special_tokens(["<|endoftext|>"])
  return hf


def test_spelled_special_token_is_text_by_default():
  """As llama.cpp (parse_special=false) and `transformers` with split_special_tokens=True."""
  text = "end <|endoftext|>next"
  view = ByteTokenizer(_with_endoftext(), bos="<|endoftext|>")
  ref = _with_endoftext()
  ref.encode_special_tokens = True  # HF's switch for the same rule
  ids = view.encode(text)
  assert ids.tolist() == ref.encode(text, add_special_tokens=False).ids
  assert view.bos_id not in ids and view.decode(ids) == text.encode()
  assert b" <" in [view.vocab[i] for i in ids]  # one text, not cut where the special was


def test_parse_special_maps_a_spelled_special_token_to_its_id(tmp_path):
  """As `transformers`' default: the special id, which stands for no bytes."""
  text = "end<|endoftext|>next"
  view = ByteTokenizer(_with_endoftext(), bos="<|endoftext|>", parse_special=True)
  ids = view.encode(text)
  assert ids.tolist() == _with_endoftext().encode(text, add_special_tokens=False).ids
  assert view.bos_id in ids and view.decode(ids) == b"endnext"
  # Both rules hold on one HF tokenizer object, and the choice survives save/load.
  shared = ByteTokenizer(view.hf, bos="<|endoftext|>")
  assert view.bos_id not in shared.encode(text) and view.bos_id in view.encode(text)
  view.save(str(tmp_path / "t.json"))
  assert load_tokenizer(str(tmp_path / "t.json")).parse_special
  assert not load_tokenizer(str(tmp_path / "t.json"), parse_special=False).parse_special
