"""Llama, Mistral and Qwen2 checkpoints written by transformers, imported into jaxtok: same
logits, same greedy tokens; and jaxtok Transformers exported and read back by transformers."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from jaxtok import generate
from jaxtok.models import hf
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers.byte_view import ByteTokenizer

BASE = dict(
  hidden_size=64,
  intermediate_size=96,
  num_hidden_layers=2,
  num_attention_heads=4,
  num_key_value_heads=2,
  max_position_embeddings=256,
  rms_norm_eps=1e-6,
)
MODELS = {
  "llama": (
    transformers.LlamaConfig,
    dict(rope_parameters={"rope_type": "default", "rope_theta": 5e4}),
  ),
  # tied embeddings, head_dim != hidden / heads (as in Qwen3-style and Gemma-style configs)
  "llama_tied_head_dim": (transformers.LlamaConfig, dict(tie_word_embeddings=True, head_dim=32)),
  "mistral_window": (transformers.MistralConfig, dict(sliding_window=8)),
  # Llama 3.1's RoPE scaling; a short original context, so that it changes the angles
  "llama3_rope": (
    transformers.LlamaConfig,
    dict(
      rope_parameters=dict(
        rope_type="llama3",
        rope_theta=5e5,
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=64,
      )
    ),
  ),
  "qwen2_bias": (transformers.Qwen2Config, dict(tie_word_embeddings=True)),
}
TEXT = "def main():\n    print('hello, world')  # greet\n" * 8


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=300,
    special_tokens=["<s>", "</s>", "<pad>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  tok.train_from_iterator([TEXT], trainer)
  path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
  tok.save(str(path))
  return str(path)


@pytest.fixture(scope="module", params=sorted(MODELS))
def pair(request, tmp_path_factory, tokenizer_file):
  """(transformers model, its directory): random weights, 5 padding rows past the tokenizer."""
  cls, extra = MODELS[request.param]
  n_tok = Tokenizer.from_file(tokenizer_file).get_vocab_size()
  cfg = cls(**BASE, **extra, vocab_size=n_tok + 5, bos_token_id=0, eos_token_id=1, pad_token_id=2)
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
  with torch.no_grad():  # non-trivial norms and biases
    for name, p in model.named_parameters():
      if name.endswith(("norm.weight", ".bias")):
        p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
  path = tmp_path_factory.mktemp(request.param)
  model.save_pretrained(path)
  with open(tokenizer_file) as f, open(path / "tokenizer.json", "w") as g:
    g.write(f.read())
  return model, str(path)


def test_logits_equal_transformers(pair):
  ref, path = pair
  loaded = hf.load(path)
  assert loaded.kind == "transformer"
  tokens = np.random.default_rng(0).integers(0, ref.config.vocab_size, (2, 24))
  with torch.no_grad():
    want = ref(torch.tensor(tokens)).logits.numpy()
  got = np.asarray(loaded.model(jnp.asarray(tokens, jnp.int32)))
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_greedy_generation_equals_transformers(pair):
  ref, path = pair
  loaded = hf.load(path)
  tok = loaded.tokenizer
  model = hf.fit_vocab(loaded.model, tok)  # drops the 5 padding rows
  assert model.cfg.vocab_size == tok.vocab_size == ref.config.vocab_size - 5
  prompt = "def main():\n"
  got = generate.generate_text(model, tok, prompt, max_new_tokens=64)
  ids = np.concatenate([[tok.bos_id], tok.encode(prompt)])
  never = [
    i
    for i in range(ref.config.vocab_size)
    if i >= tok.vocab_size or (not tok.lengths[i] and i != tok.eos_id)
  ]
  with torch.no_grad():
    out = ref.generate(
      torch.tensor(ids[None]),
      max_new_tokens=64,
      do_sample=False,
      suppress_tokens=never,
      eos_token_id=tok.eos_id,
      pad_token_id=tok.pad_id,
    )[0, len(ids) :].tolist()
  out = [i for i in out if i != tok.eos_id]
  assert len(out) > 16
  assert got == tok.decode(out)


EXPORTS = {
  "interleaved_gqa": dict(n_kv_heads=2),  # jaxtok's own RoPE layout: q/k columns permuted
  "tied_half_head_dim": dict(tie_embeddings=True, rope_layout="half", head_dim=24),
  "window": dict(sliding_window=6),  # -> Mistral
  "llama3_rope": dict(rope_layout="half", rope_scaling=(8.0, 1.0, 4.0, 64.0)),
  "qkv_bias": dict(qkv_bias=True, tie_embeddings=True),  # -> Qwen2
}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_export_loads_in_transformers_with_the_same_logits(name, tmp_path):
  cfg = TransformerConfig(
    vocab_size=211, d_model=48, n_layers=2, n_heads=4, mlp_dim=80, rope_theta=1e4, **EXPORTS[name]
  )
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  if cfg.qkv_bias:  # biases start at zero: make them matter
    for w in (model.blocks.attn.wq, model.blocks.attn.wk, model.blocks.attn.wv):
      w.bias.set_value(jnp.asarray(np.random.default_rng(1).normal(size=w.bias.shape), jnp.float32))
  out = hf.save_transformer(model, str(tmp_path / "out"))
  ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 20))
  with torch.no_grad():
    want = ref(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(tokens))), want, atol=1e-4, rtol=0)
  # ... and back: the same parameters (in HF's RoPE layout when jaxtok's differs).
  back = hf.load(out).model
  again = np.asarray(back(jnp.asarray(tokens)))
  np.testing.assert_allclose(again, want, atol=1e-4, rtol=0)
  with open(tmp_path / "out" / "config.json") as f:
    kind = json.load(f)["model_type"]
  assert kind == {"window": "mistral", "qkv_bias": "qwen2"}.get(name, "llama")


def test_export_with_tokenizer_writes_tokenizer_and_special_ids(tmp_path, tokenizer_file):
  tok = ByteTokenizer(Tokenizer.from_file(tokenizer_file))
  cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, mlp_dim=64)
  out = hf.save_transformer(Transformer(cfg, rngs=nnx.Rngs(0)), str(tmp_path / "m"), tokenizer=tok)
  hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=f"{out}/tokenizer.json")
  assert len(hf_tok) == tok.vocab_size
  assert hf_tok.encode(TEXT[:40]) == tok.encode(TEXT[:40]).tolist()
  back = hf.load(out)
  assert back.tokenizer.vocab_size == tok.vocab_size and back.tokenizer.eos_id == tok.eos_id
