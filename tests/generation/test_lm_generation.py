"""Transformer LM generation (byte and token vocab): batched prefill + on-device decode loop
= each row's greedy decode by full forwards; compiled steps reused across calls; streaming,
stop strings, EOS on device, the Python API and its errors."""

import codecs

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxtok
from jaxtok.data import codec
from jaxtok.generation import LMGenerator, SamplingConfig, generate_text, loop
from jaxtok.generation.sampling import byte_vocab_allowed, row_keys
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.targets import train_tokenizer

ZEN = codecs.decode(__import__("this").s, "rot13")


@pytest.fixture(scope="module")
def byte_lm():
  cfg = TransformerConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=64)
  return Transformer(cfg, rngs=nnx.Rngs(0))


def full_forward_decode(model, prompt_ids, n, allowed, eos, pad=64):
  """Greedy ids and log-probs by re-running the whole sequence (padded: one compilation)."""
  fwd = jax.jit(lambda x: jax.nn.log_softmax(model(x)))
  ids, out, lps = list(prompt_ids), [], []
  for _ in range(n):
    x = np.zeros((1, pad), np.int32)
    x[0, : len(ids)] = ids
    logp = np.asarray(fwd(jnp.asarray(x)))[0, len(ids) - 1]
    nxt = int(np.argmax(np.where(allowed, logp, -np.inf)))
    if nxt == eos:
      break
    out.append(nxt)
    lps.append(logp[nxt])
    ids.append(nxt)
  return out, np.asarray(lps, np.float32)


def test_batched_byte_lm_rows_equal_their_full_forward_decode(byte_lm):
  prompts = [b"", b"abc", b"\xff\xfe not utf-8", ZEN[:40].encode()]
  got = LMGenerator(byte_lm).generate(prompts, 10, chunk=4)
  for b, p in enumerate(prompts):
    ids = codec.encode(p, add_eos=False)
    want, lps = full_forward_decode(byte_lm, ids, 10, byte_vocab_allowed(), codec.EOS_ID)
    assert got[b].text == codec.decode(np.asarray(want, np.int32)), b
    np.testing.assert_allclose(got[b].logprobs, lps, atol=1e-4)


def test_a_row_samples_the_same_alone_or_in_a_batch(byte_lm):
  gen = LMGenerator(byte_lm)
  sampling = SamplingConfig(temperature=1.0, top_p=0.95)
  prompts = [b"x", b"hello there"]
  batch = gen.generate(prompts, 12, sampling=sampling, seed=[3, 4])
  for b, p in enumerate(prompts):
    alone = gen.generate([p], 12, sampling=sampling, seed=[[3, 4][b]])[0]
    assert alone.text == batch[b].text
    np.testing.assert_allclose(alone.logprobs, batch[b].logprobs, atol=1e-5)
  assert batch[0].text != batch[1].text


def test_streamed_chunks_concatenate_to_the_result_and_chunking_changes_nothing(byte_lm):
  gen = LMGenerator(byte_lm)
  sampling = SamplingConfig(temperature=0.8)
  pieces = {0: [], 1: []}
  out = gen.generate(
    [b"ab", b"cd"],
    13,
    sampling=sampling,
    seed=1,
    chunk=3,
    on_bytes=lambda b, d: pieces[b].append(d),
  )
  whole = gen.generate([b"ab", b"cd"], 13, sampling=sampling, seed=1, chunk=32)
  for b in range(2):
    assert b"".join(pieces[b]) == out[b].text == whole[b].text
    assert len(pieces[b]) == 5  # 13 bytes in chunks of 3: streamed as they came
    assert len(out[b].text) == 13 and out[b].stop_reason == "length"


def test_stop_strings_end_a_row_after_the_string(byte_lm):
  gen = LMGenerator(byte_lm)
  free = gen.generate([b"q"], 20)[0].text
  stop = free[5:7]
  first = free.find(stop)
  got = gen.generate([b"q", b"q"], 20, stop=[stop, b"\x00never"])
  for g in got:
    assert g.text == free[: first + len(stop)] and g.stop_reason == "stop"
    assert len(g.logprobs) == len(g.text)


def test_eos_stops_the_loop_on_device(byte_lm):
  """Rows whose next id is EOS: the loop runs one step, not the chunk, and reports EOS."""
  gen = LMGenerator(byte_lm)
  dec = gen.start([b"abc", b"d"], 16)
  dec = dec.replace(logits_BxV=dec.logits_BxV.at[:, codec.EOS_ID].set(1e4))
  args = (gen.decoder, gen.params, dec, row_keys(0, 2), jnp.asarray(gen.allowed_V), 16)
  _, ids, _, steps = loop.decode_chunk(*args, sampling=SamplingConfig(), chunk=16)
  assert int(steps) == 1
  assert np.asarray(ids)[:, 0].tolist() == [codec.EOS_ID] * 2
  assert np.all(np.asarray(ids)[:, 1:] == -1)


@pytest.fixture(scope="module")
def token_lm():
  tok = ByteTokenizer(train_tokenizer("bpe", [ZEN] * 5, 300))
  cfg = TransformerConfig(
    vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, mlp_dim=64, tie_embeddings=True
  )
  return Transformer(cfg, rngs=nnx.Rngs(1)), tok


def test_generate_text_compiles_once_per_prompt_bucket(token_lm):
  """Issue 18.5: a second call with another prompt of the same length bucket costs only
  decoding: no backend compilation at all."""
  model, tok = token_lm
  compiles = []

  def listener(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(duration)

  generate_text(model, tok, "Beautiful is better", max_new_tokens=6)  # compiles
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    text = generate_text(model, tok, "Flat is better than", max_new_tokens=6)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert compiles == []
  assert isinstance(text, bytes) and text


def test_token_model_generation_equals_its_full_forward_decode(token_lm):
  model, tok = token_lm
  prompt = "Simple is better than"
  out = jaxtok.generate(model, prompt, max_new_tokens=8, tokenizer=tok)
  ids = np.concatenate([[tok.bos_id], tok.encode(prompt)])
  allowed = np.asarray(tok.lengths) > 0
  allowed[tok.eos_id] = True
  want, lps = full_forward_decode(model, ids, 8, allowed, tok.eos_id)
  assert out.text == tok.decode(want)
  np.testing.assert_array_equal(out.ids, want)
  # A token's log-prob sits on its last byte: the bytes' sum is the sequence's log-prob.
  np.testing.assert_allclose(out.logprobs.sum(), lps.sum(), rtol=1e-5)
  ends = np.cumsum([len(tok.vocab[i]) for i in want]) - 1
  np.testing.assert_allclose(out.logprobs[ends], lps, atol=1e-4)


def test_python_api_returns_text_and_per_byte_logprobs(byte_lm):
  one = jaxtok.generate(byte_lm, b"abc", max_new_bytes=5, temperature=0.7, top_k=10, seed=2)
  assert isinstance(one, loop.Generation) and len(one.text) == len(one.logprobs) == 5
  assert np.all(one.logprobs <= 0)
  many = jaxtok.generate(byte_lm, [b"abc", "d\u00e9"], max_new_bytes=5, temperature=0.7, seed=2)
  assert [len(g.text) for g in many] == [5, 5]


@pytest.mark.parametrize(
  "kw, match",
  [
    (dict(max_new_bytes=0), "max_new_bytes"),
    (dict(max_new_bytes=-3), "max_new_bytes"),
    (dict(temperature=-0.1), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(stop=[b""]), "stop"),
    (dict(seed=[1, 2, 3]), "seed"),
    (dict(max_new_tokens=4), "max_new_bytes"),
  ],
)
def test_bad_input_is_named(byte_lm, kw, match):
  with pytest.raises(ValueError, match=match):
    jaxtok.generate(byte_lm, b"abc", **kw)


def test_prompt_longer_than_max_len_and_vocab_without_tokenizer(byte_lm, token_lm):
  with pytest.raises(ValueError, match="max_len=8"):
    LMGenerator(byte_lm, max_len=8).generate([b"abcdef"], 4)
  with pytest.raises(ValueError, match="tokenizer"):
    LMGenerator(token_lm[0])
