"""Bits per byte leave EOS out of the numerator and the denominator, for every model kind."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.data import codec
from jaxtok.data.packing import PackedBatches, with_target_bytes
from jaxtok.models.blt import BLT, BLTConfig, blt_eval_loss
from jaxtok.models.losses import lm_loss, summarize
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import PatchingConfig
from jaxtok.tokenizers import bpe
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.train.blt_task import BLTBatches

DOCS = [b"short", b"a second document", b"x", b"and a last one, with more bytes"]


def hand_bpb(logits_BxTxV, targets_BxT, nbytes_BxT) -> float:
  """Σ -log p over the targets that stand for bytes / ln 2 / their bytes (numpy)."""
  x = np.asarray(logits_BxTxV, np.float64)
  logp = x - x.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  nats = nbytes = 0.0
  for (b, t), y in np.ndenumerate(targets_BxT):
    if y >= 0 and nbytes_BxT[b, t] > 0:
      nats -= logp[b, t, y]
      nbytes += nbytes_BxT[b, t]
  return nats / math.log(2) / nbytes


def packed(encode_fn=None):
  it = PackedBatches(
    DOCS, batch_size=2, seq_len=24, seed=0, shuffle=False, repeat=False, encode_fn=encode_fn
  )
  return list(it)


def byte_count(batch):
  return (batch["targets"] >= codec.OFFSET).astype(int)  # what the hand computation counts


def lm_logits(model, b):
  return model(b["inputs"], segment_ids=b["segment_ids"], positions=b["positions"])


def byte_lm():
  cfg = TransformerConfig(d_model=32, n_layers=1, n_heads=2, mlp_dim=64)
  batches = packed()
  return Transformer(cfg, rngs=nnx.Rngs(0)), lm_loss, lm_logits, batches, byte_count


def bpe_lm():
  tok = ByteTokenizer(bpe.train_bpe([d.decode() for d in DOCS] * 5, 280))
  cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, mlp_dim=64)
  batches = [with_target_bytes(b, tok.lengths) for b in packed(tok.make_encoder())]
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  return model, lm_loss, lm_logits, batches, lambda b: b["target_bytes"]


def blt():
  pcfg = PatchingConfig(scheme="static", patch_size=3)
  cfg = BLTConfig(
    d_local=16,
    d_global=32,
    n_layers_global=1,
    n_layers_decoder=1,
    n_heads_local=2,
    n_heads_global=2,
    cross_attn_heads=2,
    hash_vocab=31,
    hash_ngram_sizes=(2, 3),
    max_patches=8,
    lookahead=pcfg.lookahead,
  )
  host = BLTBatches(pcfg, cfg)

  def logits(model, b):
    keys = ("patch_starts", "hash_ids", "segment_ids", "positions")
    t = b["inputs"].shape[1]
    return model.forward(b["inputs"], **{k: b[k] for k in keys}, max_patches=t)[0]

  batches = [host(b) for b in packed()]
  return BLT(cfg, rngs=nnx.Rngs(0)), blt_eval_loss, logits, batches, byte_count


@pytest.mark.parametrize("kind", [byte_lm, bpe_lm, blt], ids=lambda f: f.__name__)
def test_bpb_leaves_eos_out_of_numerator_and_denominator(kind):
  model, loss_fn, logits_fn, batches, nbytes_fn = kind()
  graphdef, params = nnx.split(model, nnx.Param)

  @jax.jit
  def run(params, b):
    m = nnx.merge(graphdef, params)
    return loss_fn(m, b), logits_fn(m, b)

  totals, logits = None, []
  for b in batches:
    sums, lg = run(params, {k: jnp.asarray(v) for k, v in b.items()})
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    logits.append(np.asarray(lg))
  out = summarize(jax.device_get(totals))
  targets = np.concatenate([b["targets"] for b in batches])
  nbytes = np.concatenate([nbytes_fn(b) for b in batches])
  want = hand_bpb(np.concatenate(logits), targets, nbytes)
  assert out["bytes"] == sum(len(d) for d in DOCS)
  assert out["tokens"] > (nbytes > 0).sum()  # EOS targets are there (and trained) ...
  np.testing.assert_allclose(out["bpb"], want, rtol=1e-5)
  assert out["bpb"] < out["loss"] * out["tokens"] / math.log(2) / out["bytes"]  # ... not in BPB
