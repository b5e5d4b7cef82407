"""The identity phase of ZeTT training does something in the residual form (the default):
half of each batch reads base tokens split into other base tokens, so the hypernetwork,
which starts as FVT, has an error to learn from, and a step changes its parameters."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import zett_tiny
from jaxtok.models import transfer
from jaxtok.models.hypernet import HypernetConfig
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.targets import train_tokenizer
from jaxtok.train import zett
from jaxtok.train.optimizer import make_optimizer
from jaxtok.train.steps import TrainState, make_train_step

TEXT = [
  "def tokenize(text):\n    return [t for t in text.split() if t]\n",
  "The quick brown fox jumps over the lazy dog; naive cafe, Strasse.",
] * 40


def _base():
  tok = ByteTokenizer(train_tokenizer("bpe", TEXT, 400))
  cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, mlp_dim=64)
  return Transformer(cfg, rngs=nnx.Rngs(1)), tok


def _config(batch=64):
  c = zett_tiny.get_config()
  c.model.update(n_layers=1, n_heads=2, mlp_dim=64, copy_shared=False)
  c.train.update(identity_steps=3, identity_batch=batch)
  return c


def test_identity_batch_reads_tokens_as_themselves_and_as_their_parts():
  _, tok = _base()
  b = zett.identity_batch(tok, 64, 7, np.random.default_rng(0), with_self=True)
  ids, decomp = b["base_ids"], b["decomp"]
  assert (decomp[:32, 0] == ids[:32]).all() and (decomp[:32, 1:] == -1).all()
  for i, row in zip(ids[32:], decomp[32:]):
    row = row[row >= 0]
    assert len(row) >= 2 and i not in row  # parts, never the token itself
    spelled = b"".join(tok.vocab[j] for j in row)
    assert spelled == tok.vocab[i] or (len(row) == 7 and tok.vocab[i].startswith(spelled))


def test_identity_step_changes_the_residual_hypernetwork():
  base, tok = _base()
  config = _config()
  hcfg = HypernetConfig.from_dict(config.model)
  assert hcfg.residual  # the default: the untrained hypernetwork is FVT
  model = zett.build(hcfg, base, nnx.Rngs(0))
  graphdef, params, frozen = nnx.split(model, zett.HYPERNET, ...)
  batch = next(zett.ZettBatches(config, tok, text_it=None))  # step 0: an identity step
  # At init the loss is FVT's error: the mean of the parts' embeddings vs the token's own,
  # relative to the table's variance.
  d, want = batch["decomp"], 0.0
  for table in base.embedding_tables():  # input and (untied) output embeddings
    emb = np.asarray(table, np.float32)
    fvt = np.where(d[..., None] >= 0, emb[np.maximum(d, 0)], 0).sum(1) / (d >= 0).sum(1)[:, None]
    want += ((fvt - emb[batch["base_ids"]]) ** 2).mean(-1).sum() / emb.var(0).mean()
  dev = {k: jnp.asarray(v) for k, v in batch.items()}
  got = zett.identity_loss(nnx.merge(graphdef, params, frozen), dev)["loss_sum"]
  np.testing.assert_allclose(float(got), want, rtol=1e-4)
  assert want > 0
  before = jax.tree.map(np.asarray, params)  # the step donates its input state
  tx, schedule = make_optimizer(lr=1e-3, warmup_steps=0, total_steps=3)
  state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  state, metrics = make_train_step(graphdef, tx, schedule, zett.identity_loss)(state, dev, frozen)
  assert float(metrics["grad_norm"]) > 0
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params, before)
  assert max(jax.tree.leaves(moved)) > 0


def test_shared_tokens_keep_their_base_embeddings():
  """copy_shared: a step's tokens whose bytes are a base token copy its embedding exactly;
  only the others are predicted."""
  base, tok = _base()
  other = [open(m.__file__).read() for m in (json, os)]
  target = ByteTokenizer(train_tokenizer("bpe", other, 1200))  # tokens the base lacks
  batch = zett.tokenize_rows([[(other[0][:2000].encode(), True, True)]], target, 256)
  kw = dict(size=300, max_len=7)
  b = zett.step_vocabulary(batch, target, tok, copy_shared=True, rng=np.random.default_rng(0), **kw)
  plain = zett.step_vocabulary(batch, target, tok, rng=np.random.default_rng(0), **kw)
  shared = plain["shared_ids"] >= 0
  assert shared.sum() > 20 and (~shared & b["vocab_valid"] & (plain["copy_ids"] < 0)).sum() > 20
  np.testing.assert_array_equal(b["copy_ids"][shared], plain["shared_ids"][shared])
  assert (b["shared_ids"] == -1).all()  # nothing left for the auxiliary loss
  model = zett.build(HypernetConfig(copy_shared=True), base, nnx.Rngs(0))
  e_in, _ = model.predict(jnp.asarray(b["decomp"]), jnp.asarray(b["copy_ids"]))
  emb = np.asarray(base.embedding_tables()[0])
  np.testing.assert_array_equal(np.asarray(e_in)[shared], emb[b["copy_ids"][shared]])


def test_embedding_losses_do_not_depend_on_the_base_embedding_scale():
  """The identity and auxiliary losses are relative to the base table's variance, so one
  weight (train.aux_weight) means the same for SmolLM2 (variance 0.01) as for a tiny LM."""
  base, tok = _base()
  g, params = nnx.split(base, nnx.Param)
  tables = [None if t is None else 10 * np.asarray(t) for t in base.embedding_tables()]
  scaled = nnx.merge(g, transfer.with_embeddings(params, *tables))
  batch = {
    k: jnp.asarray(v)
    for k, v in zett.identity_batch(tok, 64, 7, np.random.default_rng(0), with_self=True).items()
  }
  hcfg = HypernetConfig.from_dict(_config().model)
  losses = [
    float(zett.identity_loss(zett.build(hcfg, b, nnx.Rngs(0)), batch)["loss_sum"])
    for b in (base, scaled)
  ]
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
