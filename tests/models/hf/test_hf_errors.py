"""Bad Hugging Face checkpoints fail with the file and tensor named; exports are all or nothing;
hub ids resolve offline through the cache; parameters load sharded onto a mesh."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from tokenizers import Tokenizer, models, pre_tokenizers

from jaxtok import hub
from jaxtok.models import hf
from jaxtok.models.hf import tensors
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import load_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def tiny_llama(path, **kw):
  cfg = transformers.LlamaConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=2,
    **kw,
  )
  torch.manual_seed(0)
  transformers.LlamaForCausalLM(cfg).save_pretrained(path, max_shard_size="20KB")
  return str(path)


def edit_config(path, **kw):
  with open(os.path.join(path, "config.json")) as f:
    c = json.load(f)
  c.update(kw)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(c, f)


def test_unsupported_architecture_names_the_config(tmp_path):
  path = tiny_llama(tmp_path / "m")
  edit_config(path, model_type="gemma")
  with pytest.raises(hf.HFError, match=r"config\.json: model_type 'gemma' is not a supported"):
    hf.load(path)


def test_unsupported_variants_are_refused(tmp_path):
  path = tiny_llama(tmp_path / "m")
  edit_config(path, rope_parameters={"rope_type": "yarn", "rope_theta": 5e5, "factor": 8.0})
  with pytest.raises(hf.HFError, match="rope_type 'yarn' is not supported"):
    hf.load(path)
  path = tiny_llama(tmp_path / "b", attention_bias=True)
  with pytest.raises(hf.HFError, match="attention_bias"):
    hf.load(path)


def test_missing_shard_names_index_and_shard(tmp_path):
  path = tiny_llama(tmp_path / "m")
  with open(os.path.join(path, tensors.INDEX)) as f:
    shard = sorted(set(json.load(f)["weight_map"].values()))[1]
  os.remove(os.path.join(path, shard))
  with pytest.raises(hf.HFError, match=rf"{tensors.INDEX} lists shard {shard}, which is missing"):
    hf.load(path)


def test_shape_mismatch_names_file_and_tensor(tmp_path):
  path = tiny_llama(tmp_path / "m")
  edit_config(path, intermediate_size=64)
  with pytest.raises(
    hf.HFError, match=r"safetensors: tensor model\.layers\.0\.mlp\.\w+_proj\.weight has shape"
  ):
    hf.load(path)


def test_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
  path = tiny_llama(tmp_path / "m")
  vocab = {chr(0x100 + i): i for i in range(100)}  # 100 tokens, 64 embeddings
  tok = Tokenizer(models.WordLevel(vocab, unk_token=chr(0x100)))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.save(os.path.join(path, "tokenizer.json"))
  with pytest.raises(
    hf.HFError,
    match=r"tokenizer\.json has 100 tokens but the embedding model\.embed_tokens\.weight has 64",
  ):
    hf.load(path)
  model = Transformer(
    TransformerConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2), rngs=nnx.Rngs(0)
  )
  with pytest.raises(hf.HFError, match="byte view has .* tokens but the model 64"):
    hf.save_transformer(model, str(tmp_path / "out"), tokenizer=ByteTokenizer(tok))
  assert not (tmp_path / "out").exists()


def test_export_never_overwrites_and_leaves_nothing_half_written(tmp_path):
  model = Transformer(
    TransformerConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2), rngs=nnx.Rngs(0)
  )
  busy = tmp_path / "busy"
  busy.mkdir()
  (busy / "keep.txt").write_text("mine")
  with pytest.raises(hf.HFError, match="already exists and is not empty"):
    hf.save_transformer(model, str(busy))
  assert [p.name for p in busy.iterdir()] == ["keep.txt"]

  def failing():
    yield "a", np.zeros(3, np.float32)
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    tensors.write(str(tmp_path / "new"), failing(), {"config.json": "{}"})
  assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no output, no temporary


def test_many_shards_are_written_with_an_index(tmp_path):
  model = Transformer(
    TransformerConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2), rngs=nnx.Rngs(0)
  )
  out = str(tmp_path / "out")
  tensors.write(
    out,
    hf.params_lib.tensors(model, hf.llama_format.table(model.cfg)),
    {"config.json": "{}"},
    shard_bytes=2000,
  )
  names = sorted(os.listdir(out))
  assert tensors.INDEX in names and "model-00001-of-" in names[1]
  with tensors.Reader(out) as r:
    assert r.get("model.layers.1.mlp.down_proj.weight").shape == (16, model.cfg.hidden_dim)


def test_hub_ids_resolve_offline_through_the_cache(tmp_path, monkeypatch):
  # The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<rev>/}.
  repo = tmp_path / "hub" / "models--someorg--tiny"
  rev = "0123456789abcdef0123456789abcdef01234567"
  snap = repo / "snapshots" / rev
  tiny_llama(snap)
  tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "<unk>": 2}, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.save(str(snap / "tokenizer.json"))
  (repo / "refs").mkdir()
  (repo / "refs" / "main").write_text(rev)
  monkeypatch.setattr(hub.huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
  monkeypatch.setattr(hub.huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  assert hub.resolve("hf:someorg/tiny") == str(snap)
  loaded = hf.load("hf:someorg/tiny")
  assert loaded.model.cfg.d_model == 32 and loaded.tokenizer.hf_size == 3
  assert load_tokenizer("hf:someorg/tiny").hf_size == 3  # --tokenizer=hf:someorg/tiny
  with pytest.raises(hub.HubError, match="'someorg/absent' is not in the local cache"):
    hub.resolve("hf:someorg/absent")
  with pytest.raises(hub.HubError, match="not a checkpoint directory"):
    hub.resolve("hf:./no/such/dir")


SHARDED = """
import sys
import jax, numpy as np
from jaxtok import sharding
from jaxtok.models import hf

assert jax.device_count() == 8
mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
model = hf.load(sys.argv[1], mesh=mesh).model
emb = model.embed.embedding[...]
assert emb.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp"), emb.sharding.spec
assert len(emb.addressable_shards) == 8 and emb.addressable_shards[0].data.shape == (32, 16)
up = model.blocks.mlp.up.kernel[...]  # [layers, embed, mlp]: stacked, then sharded
assert up.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor"), up.sharding.spec
tokens = np.arange(12)[None]
plain = hf.load(sys.argv[1]).model
np.testing.assert_allclose(np.asarray(model(tokens)), np.asarray(plain(tokens)), atol=1e-5)
print("ok")
"""


def test_load_shards_parameters_onto_a_mesh(tmp_path):
  path = tiny_llama(tmp_path / "m")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [sys.executable, "-c", SHARDED, path], env=env, capture_output=True, text=True, cwd=ROOT
  )
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
