"""Entropies: the formula, windowed scoring of long documents, the precomputed store."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.data import codec
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import entropy


def test_entropy_of_logits_by_hand():
  logits = jnp.log(jnp.asarray([[[0.5, 0.25, 0.25], [1.0, 1e-12, 1e-12]]]))
  h = np.asarray(entropy.entropy_from_logits(logits))[0]
  assert h[0] == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)), rel=1e-5)
  assert h[1] == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def em():
  # One layer with a window of 8: a byte's output depends on at most 7 bytes before it,
  # so scoring in windows with >= 8 bytes of context is exact.
  cfg = TransformerConfig(d_model=32, n_layers=1, n_heads=2, mlp_dim=64, sliding_window=8)
  return EntropyModel(Transformer(cfg, rngs=nnx.Rngs(3)), seq_len=32)


def test_windowed_scoring_equals_a_whole_document_forward(em):
  rng = np.random.default_rng(0)
  docs = [rng.integers(0, 256, n).astype(np.uint8).tobytes() for n in (5, 30, 31, 100, 77)]
  got = list(entropy.document_entropies(em, docs, batch_size=3))
  assert len(got) == len(docs)
  # Each document whole, in one padded batch (one compilation).
  x = np.full((len(docs), 128), codec.PAD_ID, np.int32)
  for i, doc in enumerate(docs):
    x[i, : len(doc) + 2] = codec.encode(doc)
  want = em.next_entropies(x, (x >= 0).astype(np.int32))
  for i, (doc, h) in enumerate(zip(docs, got)):
    assert h.shape == (len(doc) + 2,) and h.dtype == np.float16
    np.testing.assert_allclose(h.astype(np.float32), want[i, : len(h)], rtol=2e-3, atol=2e-3)


def test_windows_cover_every_position_once_with_context():
  for n in (1, 32, 33, 64, 100, 1000):
    for r in (32, 33):
      wins = entropy._windows(n, r)
      kept = [i for _, k, e in wins for i in range(k, e)]
      assert kept == list(range(n))
      assert all(e - s <= r and (k == 0 or k - s >= r - r // 2) for s, k, e in wins)


@pytest.fixture(scope="module")
def wide_em():
  # Attention over the whole window (R = 32): a byte's entropy depends on where its
  # window starts, so a window placement that moved with the document's length would leak.
  cfg = TransformerConfig(d_model=32, n_layers=2, n_heads=2, mlp_dim=64, sliding_window=None)
  return EntropyModel(Transformer(cfg, rngs=nnx.Rngs(5)), seq_len=32)


def test_precomputed_entropies_do_not_depend_on_later_bytes(wide_em):
  # Every prefix cut of a document gets the same entropies as the whole document, at
  # every position both hold the same bytes (ids 0..m of a prefix of m bytes: its EOS
  # is not the whole document's byte m).
  rng = np.random.default_rng(1)
  doc = rng.integers(0, 256, 90).astype(np.uint8).tobytes()
  cuts = list(range(len(doc) + 1))
  whole, *prefixes = entropy.document_entropies(wide_em, [doc] + [doc[:m] for m in cuts], 16)
  for m, h in zip(cuts, prefixes):
    np.testing.assert_array_equal(h[: m + 1], whole[: m + 1], err_msg=f"prefix of {m} bytes")


def test_precomputed_entropies_equal_a_forward_over_each_bytes_window(wide_em):
  # Slow twin: the entropy of the prediction made at i is the model's output at the end
  # of the row ids[s:i+1], s = the first multiple of R/2 with i - s < R (all of the
  # bytes before i for i < R, as on the fly at the start of a row).
  rng = np.random.default_rng(2)
  doc = rng.integers(0, 256, 75).astype(np.uint8).tobytes()
  ids, r = codec.encode(doc), wide_em.seq_len
  rows = np.full((len(ids), r), codec.PAD_ID, np.int32)
  ends = []
  for i in range(len(ids)):
    s = max(0, -(-(i - r + 1) // (r // 2)) * (r // 2))
    rows[i, : i + 1 - s] = ids[s : i + 1]
    ends.append(i - s)
  want = wide_em.next_entropies(rows, (rows >= 0).astype(np.int32))[np.arange(len(ids)), ends]
  got = next(entropy.document_entropies(wide_em, [doc], 16))
  np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-3, atol=1e-3)


def test_precomputed_store_round_trip(em, tmp_path):
  docs = [b"first document", b"second one, longer " * 5, b"first document"]
  path = entropy.precompute(em, docs, str(tmp_path / "e" / "train.array_record"), batch_size=3)
  store = entropy.EntropyStore([path])
  assert len(store) == 2  # duplicates share an entry
  for doc in docs:
    np.testing.assert_allclose(
      store(doc), next(entropy.document_entropies(em, [doc], 3)), atol=1e-6
    )
  with pytest.raises(KeyError, match="no precomputed entropies"):
    store(b"never seen")
  with pytest.raises(FileNotFoundError, match="precompute_entropies"):
    entropy.EntropyStore([str(tmp_path / "missing.array_record")])


def test_entropy_model_must_be_a_byte_lm():
  cfg = TransformerConfig(vocab_size=300, d_model=16, n_layers=1, n_heads=2)
  with pytest.raises(ValueError, match="byte-level Transformer with vocab 260"):
    EntropyModel(Transformer(cfg, rngs=nnx.Rngs(0)), seq_len=8)
