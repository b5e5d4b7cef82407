"""ZeTT end to end on a tiny base LM: hypernetwork training (exact resume), the comparison
experiment, transfer to a restorable workdir that generates with the new tokenizer."""

import json
import os

import numpy as np
import pytest
from flax import nnx

import jaxtok
from configs import zett_tiny
from jaxtok import generation
from jaxtok.compare import zett as zett_compare
from jaxtok.eval import tokenizer_bpb
from jaxtok.models import hypernet as hypernet_lib
from jaxtok.models.transfer import with_embeddings
from jaxtok.tokenizers import embedding_init, targets
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.train import trainer, zett
from jaxtok.train.metrics import read_metrics


def tiny_config(root) -> "zett_tiny.config_dict.ConfigDict":
  c = zett_tiny.get_config()
  c.base.workdir = str(root / "base")
  c.base_train.data.update(tokenizer="bpe:512", tokenizer_docs=100)
  c.base_train.model.update(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128)
  c.base_train.train.update(steps=80, warmup_steps=10, log_every=40)
  c.model.update(n_layers=1, mlp_dim=128)
  c.sampler.update(min_vocab=500, max_vocab=800, window=2)
  c.data.update(batch_size=4, seq_len=256, tokens_per_row=128, vocab_per_step=512)
  c.train.update(
    steps=7,
    identity_steps=2,
    identity_batch=128,
    warmup_steps=2,
    log_every=1,
    ckpt_every=3,
    progress_bar=False,
    async_ckpt=False,
  )
  c.eval.update(tokenizers="", docs=6, doc_bytes=1024)
  c.compare.update(
    eval_docs=6, doc_bytes=1024, target_docs=60, focus_docs=30, batch_size=4, dynamic_merges="8"
  )
  c.compare.targets = zett_tiny.config_dict.ConfigDict(
    dict(
      wordpiece=dict(tokenizer="wordpiece:600", train_text="", eval_text=""),
      missing=dict(tokenizer="gguf:no-such-vocab", train_text="", eval_text=""),
    )
  )
  return c


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  # The resumed runs rebuild the same jitted steps: a compilation cache saves recompiling them.
  import jax

  old = {k: getattr(jax.config, k) for k in _CACHE_FLAGS}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  yield tmp_path_factory.mktemp("zett")
  for k, v in old.items():
    jax.config.update(k, v)


_CACHE_FLAGS = (
  "jax_compilation_cache_dir",
  "jax_persistent_cache_min_compile_time_secs",
  "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture(scope="module")
def trained(root):
  """A hypernetwork trained straight through, and the same run interrupted and resumed."""
  c = tiny_config(root)
  straight = trainer.train(c, str(root / "straight"))
  c = tiny_config(root)
  out = trainer.train(c, str(root / "resumed"), stop_after=4)  # off a checkpoint (every 3)
  assert out["stopped_by"] == "stop_after"
  trainer.train(tiny_config(root), str(root / "resumed"))
  return straight


def test_base_model_is_a_trained_token_lm(root, trained):
  res = json.loads((root / "base" / "results.json").read_text())
  assert res["val_bpb"] < res["val_unigram_bpb"] - 0.5


def test_hypernet_training_logs_both_stages_and_resumes_exactly(root, trained):
  a = read_metrics(str(root / "straight"), "identity/loss")
  b = read_metrics(str(root / "straight"), "train/loss")
  assert sorted(a) == [1, 2] and sorted(b) == list(range(3, 8))
  assert all(np.isfinite(list(b.values())))
  for key in ("identity/loss", "train/loss", "train/ce", "train/aux"):
    x = read_metrics(str(root / "straight"), key)
    y = read_metrics(str(root / "resumed"), key)
    assert x == y, key  # bitwise: same batches, same sampled tokenizers, same updates
  assert trained["steps"] == 7 and trained["parameters"] > 0


def test_compare_writes_every_init_and_skips_what_is_missing(root, trained):
  c = tiny_config(root)
  c.compare.hypernet_workdir = str(root / "straight")
  res = zett_compare.run(c, str(root / "compare"))
  assert (root / "compare" / "results.md").exists()
  assert "missing" in res["skipped"] and "no-such-vocab" in res["skipped"]["missing"]
  assert {r["target"] for r in res["rows"]} == {"wordpiece"}
  for r in res["rows"]:
    for m in ("original", "hypernet", "fvt", "focus", "lexical", "random"):
      assert np.isfinite(r[m]) and r[m] > 0
    assert r["random"] > r["fvt"]  # matched-random embeddings know nothing about the tokens
    assert r["bytes_per_token"] > 1.0
  dyn = res["dynamic"]
  assert [d["mode"] for d in dyn] == ["base", "in_batch", "previous_batch"]
  assert dyn[1]["tokens"] < dyn[0]["tokens"] and dyn[0]["bytes"] == dyn[1]["bytes"]
  md = (root / "compare" / "results.md").read_text()
  assert "| wordpiece |" in md and "skipped missing" in md


def test_transfer_writes_a_workdir_that_restores_and_generates(root, trained):
  c = tiny_config(root)
  target = targets.make_target("wordpiece:600", c)
  out = str(root / "transferred")
  res = zett.transfer_job(
    base="", hypernet=str(root / "straight"), tokenizer="wordpiece:600", out=out, method="hypernet"
  )
  assert res["vocab"] == target.vocab_size
  model, config = jaxtok.restore(out)
  assert model.cfg.vocab_size == target.vocab_size and config.model.name == "transformer"
  tok = load_tokenizer(os.path.join(out, "tokenizer.json"))
  assert tok.vocab == target.vocab and tok.bos_id == target.bos_id
  text = generation.generate_text(model, tok, "def ", max_new_tokens=8)
  assert isinstance(text, bytes) and len(text) > 0
  # The restored model scores text exactly as the embedding tables it was written from.
  base, base_tok = zett.load_base(c)
  hyper, _ = zett.restore_hypernet(str(root / "straight"), base)
  emb = embedding_init.BaseEmbeddings(base_tok, *base.embedding_tables())
  predict = hypernet_lib.predictor(hyper, emb.emb_in, emb.emb_out)
  tables = embedding_init.hypernet_init(target, emb, predict, hyper.cfg.max_len)
  docs = zett.eval_docs(c)[:3]
  batches = tokenizer_bpb.eval_batches(tok, docs, seq_len=128, batch_size=2)
  g, p = nnx.split(base, nnx.Param)
  want = tokenizer_bpb.bits_per_byte(g, with_embeddings(p, *tables), batches)
  g2, p2 = nnx.split(model, nnx.Param)
  got = tokenizer_bpb.bits_per_byte(g2, p2, batches)
  np.testing.assert_allclose(got["bpb"], want["bpb"], rtol=1e-5)


def test_config_errors_name_the_field(root):
  c = tiny_config(root)
  c.train.identity_steps = 50
  with pytest.raises(ValueError, match="config.train.identity_steps"):
    trainer.train(c, str(root / "bad"))
  tok = load_tokenizer(str(root / "base" / "tokenizer.json"))
  batch = zett.tokenize_rows([[(b"def f(x): return x + 1", True, True)]], tok, 32)
  with pytest.raises(ValueError, match="config.data.vocab_per_step"):
    zett.step_vocabulary(batch, tok, tok, size=5, max_len=7, rng=np.random.default_rng(0))
