"""Bits per byte are per byte: one model, one text, two tokenizers, against a slow reference."""

import math

import numpy as np
import pytest
from flax import nnx

from jaxtok.eval import tokenizer_bpb
from jaxtok.models.convert import numpy_forward
from jaxtok.models.transfer import with_embeddings
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers import embedding_init
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.targets import train_tokenizer

TRAIN = [
  "def area(r):\n    return 3.14159 * r * r\n",
  "The cat sat on the mat. Die Katze saß auf der Matte.",
  "for i in range(10):\n    print(i, i * i)\n",
] * 20
DOCS = [
  b"def square(x):\n    return x * x\n",
  "Die Matte war weich; the cat slept. Café!".encode(),
  b"print(sum(i for i in range(5)))",
  b"x",
]


@pytest.fixture(scope="module")
def setup():
  bpe = ByteTokenizer(train_tokenizer("bpe", TRAIN, 300))
  wordpiece = ByteTokenizer(train_tokenizer("wordpiece", TRAIN, 300))
  cfg = TransformerConfig(
    vocab_size=bpe.vocab_size,
    d_model=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    mlp_dim=64,
    rope_theta=500.0,
  )
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  return bpe, wordpiece, model


def slow_bpb(model, tables, tok, docs):
  """Per document, per token: -log p from a plain numpy forward over the whole document."""
  _, params = nnx.split(model, nnx.Param)
  arrays = {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(params)}
  arrays[("embed", "embedding")] = np.asarray(tables[0])
  if ("head", "kernel") in arrays:
    arrays[("head", "kernel")] = np.asarray(tables[1]).T
  nats, nbytes = 0.0, 0
  for doc in docs:
    seq = [tok.bos_id, *tok.encode(doc).tolist(), tok.eos_id]
    logits = numpy_forward(arrays, model.cfg, np.asarray(seq))
    for i in range(1, len(seq) - 1):  # EOS: in neither the numerator nor the denominator
      row = logits[i - 1]
      lse = row.max() + math.log(np.exp(row - row.max()).sum())
      nats += lse - row[seq[i]]
      nbytes += len(tok.vocab[seq[i]])
  return nats / math.log(2) / nbytes, nbytes


def test_bpb_matches_a_slow_loop_for_two_tokenizers(setup):
  bpe, wordpiece, model = setup
  _, params = nnx.split(model, nnx.Param)
  emb = embedding_init.BaseEmbeddings(bpe, *model.embedding_tables())
  graphdef = nnx.split(model, nnx.Param)[0]
  results = {}
  for name, tok, tables in [
    ("bpe", bpe, (emb.emb_in, emb.emb_out)),
    ("wordpiece", wordpiece, embedding_init.fvt_init(wordpiece, emb)),
  ]:
    batches = tokenizer_bpb.eval_batches(tok, DOCS, seq_len=256, batch_size=2)  # no doc is cut
    fast = tokenizer_bpb.bits_per_byte(graphdef, with_embeddings(params, *tables), batches)
    ref, nbytes = slow_bpb(model, tables, tok, DOCS)
    assert fast["bytes"] == nbytes == sum(len(d) for d in DOCS)  # the same bytes, per byte
    np.testing.assert_allclose(fast["bpb"], ref, rtol=2e-4)
    results[name] = fast
  # Different tokenizers split the same bytes into different numbers of tokens.
  assert results["bpe"]["tokens"] != results["wordpiece"]["tokens"]


def test_documents_split_across_rows_still_count_every_byte(setup):
  bpe, _, model = setup
  graphdef, params = nnx.split(model, nnx.Param)
  batches = tokenizer_bpb.eval_batches(bpe, DOCS, seq_len=8, batch_size=3)
  out = tokenizer_bpb.bits_per_byte(graphdef, params, batches)
  assert out["bytes"] == sum(len(d) for d in DOCS)
  assert out["tokens"] == sum(len(bpe.encode(d)) + 1 for d in DOCS)  # + eos per document
