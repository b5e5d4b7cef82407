"""Per-token features from encode_fn travel with the packed ids."""

import numpy as np
import pytest

from jaxtok.data import codec
from jaxtok.data.packing import PackedBatches


def encode_with_feature(doc: bytes):
  ids = codec.encode(doc)
  return {"inputs": ids, "f": ids.astype(np.float32) / 10}


def test_features_are_packed_aligned_with_inputs():
  docs = [b"abc", b"hello world", b"xy"]
  plain = PackedBatches(docs, batch_size=2, seq_len=5, seed=1, repeat=False)
  featured = PackedBatches(
    docs, batch_size=2, seq_len=5, seed=1, repeat=False, encode_fn=encode_with_feature
  )
  n = 0
  for a, b in zip(plain, featured, strict=True):
    for k in ("inputs", "targets", "segment_ids", "positions"):
      np.testing.assert_array_equal(a[k], b[k])
    assert b["f"].dtype == np.float32
    np.testing.assert_allclose(b["f"], np.where(a["inputs"] >= 0, a["inputs"] / 10, 0))
    n += 1
  assert n >= 2


def test_feature_of_wrong_length_is_refused():
  bad = lambda doc: {"inputs": codec.encode(doc), "f": np.zeros(1)}
  with pytest.raises(ValueError, match="feature 'f' has 1 values for 5 tokens"):
    next(PackedBatches([b"abc"], batch_size=1, seq_len=4, seed=0, encode_fn=bad))
