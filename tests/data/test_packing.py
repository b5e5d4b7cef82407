"""Tests for PackedBatches, Prefetcher and the unigram baseline."""

import json
import math

import numpy as np
import pytest

from jaxtok.data import codec
from jaxtok.data.packing import PackedBatches, Prefetcher, epoch_order, unigram_bits_per_byte

PAD = codec.PAD_ID


def make_docs(n=40, seed=0, long_len=200):
  """Documents of mixed sizes: empty, 1 byte, invalid UTF-8, longer than rows."""
  rng = np.random.default_rng(seed)
  docs = [b"", b"x", b"\x00\xff\xfe\xc3", b"", bytes(range(256)) * 2]
  docs += [
    rng.integers(0, 256, size=rng.integers(0, long_len), dtype=np.uint8).tobytes()
    for _ in range(n - len(docs))
  ]
  return docs


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def reference_rows(docs, order, seq_len):
  """Expected rows, computed the slow obvious way from the full token stream."""
  encoded = [codec.encode(docs[i]) for i in order]
  stream = np.concatenate(encoded)
  doc_of = np.repeat(np.arange(len(encoded)), [e.size for e in encoded])
  rows = []
  for start in range(0, stream.size, seq_len):
    inputs = np.full(seq_len, PAD)
    targets = np.full(seq_len, PAD)
    segments = np.zeros(seq_len, int)
    positions = np.zeros(seq_len, int)
    segment, piece_start = 0, 0
    for i in range(seq_len):
      t = start + i
      if t >= stream.size:
        break
      if i == 0 or doc_of[t] != doc_of[t - 1]:
        segment, piece_start = segment + 1, i
      inputs[i], segments[i], positions[i] = stream[t], segment, i - piece_start
      if t + 1 < stream.size and doc_of[t + 1] == doc_of[t]:
        targets[i] = stream[t + 1]
    rows.append((inputs, targets, segments, positions))
  return rows


def stack_rows(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def reconstruct_documents(batches):
  """Documents as a user sees them: pieces by segment id, a BOS starts a document."""
  docs = []
  for b in batches:
    for inputs, segments in zip(b["inputs"], b["segment_ids"]):
      for s in np.unique(segments[segments > 0]):
        piece = inputs[segments == s]
        if piece[0] == codec.BOS_ID:
          docs.append([])
        docs[-1].append(piece)
  return [codec.decode(np.concatenate(p)) for p in docs]


@pytest.mark.parametrize("batch_size,seq_len", [(3, 16), (1, 7), (4, 64), (2, 1)])
def test_every_byte_once_and_matches_reference(batch_size, seq_len):
  docs = make_docs()
  it = PackedBatches(
    docs, batch_size=batch_size, seq_len=seq_len, seed=0, shuffle=False, repeat=False
  )
  batches = list(it)
  for b in batches:
    assert set(b) == {"inputs", "targets", "segment_ids", "positions"}
    for v in b.values():
      assert v.shape == (batch_size, seq_len) and v.dtype == np.int32

  assert reconstruct_documents(batches) == docs

  rows = reference_rows(docs, range(len(docs)), seq_len)
  assert len(batches) == math.ceil(len(rows) / batch_size)
  got = stack_rows(batches)
  for r, (inputs, targets, segments, positions) in enumerate(rows):
    np.testing.assert_array_equal(got["inputs"][r], inputs)
    np.testing.assert_array_equal(got["targets"][r], targets)
    np.testing.assert_array_equal(got["segment_ids"][r], segments)
    np.testing.assert_array_equal(got["positions"][r], positions)
  # Rows after the end of the data are all padding.
  assert np.all(got["segment_ids"][len(rows) :] == 0)
  assert np.all(got["inputs"][len(rows) :] == PAD)


def test_targets_never_cross_documents_and_positions_restart():
  docs = make_docs(60, seed=1)
  it = PackedBatches(docs, batch_size=4, seq_len=32, seed=3, repeat=False)
  for b in it:
    seg, pos, inp, tgt = b["segment_ids"], b["positions"], b["inputs"], b["targets"]
    change = seg[:, 1:] != seg[:, :-1]
    assert np.all(tgt[:, :-1][change] == PAD)
    same = ~change & (seg[:, :-1] > 0)
    np.testing.assert_array_equal(tgt[:, :-1][same], inp[:, 1:][same])
    assert np.all(pos[:, 0] == 0) and np.all(seg[:, 0] <= 1)
    np.testing.assert_array_equal(pos[:, 1:][change], 0)
    np.testing.assert_array_equal(pos[:, 1:][same], pos[:, :-1][same] + 1)
    # Targets are BOS never (that would be predicting across documents).
    assert not np.any(tgt == codec.BOS_ID)
    np.testing.assert_array_equal(inp[seg == 0], PAD)
    np.testing.assert_array_equal(tgt[seg == 0], PAD)


def test_padding_only_in_last_batch():
  docs = make_docs(30, seed=2)
  batches = list(PackedBatches(docs, batch_size=2, seq_len=16, seed=0, repeat=False))
  for b in batches[:-1]:
    assert np.all(b["segment_ids"] > 0)
  assert np.any(batches[-1]["segment_ids"] == 0)


def test_repeat_continues_past_one_epoch_with_new_order():
  docs = [bytes([i]) * 5 for i in range(20)]  # 7 tokens each
  it = PackedBatches(docs, batch_size=1, seq_len=7 * 20, seed=0, shuffle=True)
  first, second = next(it), next(it)
  assert np.all(first["segment_ids"] > 0) and np.all(second["segment_ids"] > 0)
  assert it.get_state()["epoch"] >= 1

  def order(b):  # first byte of each document piece
    return b["inputs"][0][b["positions"][0] == 1].tolist()

  assert sorted(order(first)) == sorted(order(second))
  assert order(first) != order(second)
  assert order(first) == [4 + i for i in epoch_order(20, seed=0, epoch=0, shuffle=True)]


def test_deterministic_and_seed_dependent():
  docs = make_docs(50, seed=4)
  kwargs = dict(batch_size=2, seq_len=32, shuffle=True)
  a = take(PackedBatches(docs, seed=7, **kwargs), 30)
  b = take(PackedBatches(docs, seed=7, **kwargs), 30)
  c = take(PackedBatches(docs, seed=8, **kwargs), 30)
  assert_batches_equal(a, b)
  assert not all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, c))


@pytest.mark.parametrize("skip", [0, 1, 5, 37, 120])
def test_state_resume_gives_identical_batches(skip):
  docs = make_docs(25, seed=5)
  kwargs = dict(batch_size=3, seq_len=24, seed=11)
  original = PackedBatches(docs, **kwargs)
  take(original, skip)
  state = json.loads(json.dumps(original.get_state()))
  expected = take(original, 40)  # crosses at least one epoch boundary
  assert original.get_state()["epoch"] > state["epoch"]

  resumed = PackedBatches(docs, **kwargs)
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 40), expected)


def test_state_resume_without_repeat_until_the_end():
  docs = make_docs(20, seed=6)
  kwargs = dict(batch_size=2, seq_len=16, seed=0, repeat=False)
  original = PackedBatches(docs, **kwargs)
  take(original, 3)
  state = original.get_state()
  rest = list(original)
  resumed = PackedBatches(docs, **kwargs)
  resumed.set_state(state)
  assert_batches_equal(list(resumed), rest)
  # A state taken at the end resumes to nothing.
  done = PackedBatches(docs, **kwargs)
  done.set_state(original.get_state())
  assert list(done) == []


def test_set_state_is_validated():
  docs = make_docs(20)
  it = PackedBatches(docs, batch_size=2, seq_len=16, seed=0)
  next(it)
  state = it.get_state()
  with pytest.raises(ValueError, match="missing keys"):
    PackedBatches(docs, batch_size=2, seq_len=16, seed=0).set_state({"epoch": 0})
  with pytest.raises(ValueError, match="unexpected keys"):
    PackedBatches(docs, batch_size=2, seq_len=16, seed=0).set_state({**state, "x": 1})
  with pytest.raises(ValueError, match="num_docs"):
    PackedBatches(docs[:-1], batch_size=2, seq_len=16, seed=0).set_state(state)
  with pytest.raises(ValueError, match="seq_len"):
    PackedBatches(docs, batch_size=2, seq_len=32, seed=0).set_state(state)
  with pytest.raises(ValueError, match="seed"):
    PackedBatches(docs, batch_size=2, seq_len=16, seed=1).set_state(state)
  with pytest.raises(ValueError, match="position"):
    PackedBatches(docs, batch_size=2, seq_len=16, seed=0).set_state({**state, "doc_index": 99})
  # The batch size is not part of the stream, so it may change on resume.
  PackedBatches(docs, batch_size=5, seq_len=16, seed=0).set_state(state)


def test_multi_process_shards_are_disjoint_and_complete():
  docs = [f"doc-{i}:".encode() + bytes([i]) * i for i in range(23)]
  seen = []
  for p in range(3):
    batches = list(
      PackedBatches(
        docs, batch_size=2, seq_len=16, seed=5, repeat=False, process_index=p, process_count=3
      )
    )
    seen.append(reconstruct_documents(batches))
  flat = [d for shard in seen for d in shard]
  assert len(flat) == len(set(flat)) == len(docs)
  assert sorted(flat) == sorted(docs)
  assert all(abs(len(s) - len(docs) / 3) < 1 for s in seen)


def test_custom_encode_fn_and_empty_encodings():
  docs = [b"abc", b"", b"defgh"]
  encode = lambda d: codec.encode(d, add_bos=False, add_eos=False)  # noqa: E731
  batches = list(
    PackedBatches(
      docs, batch_size=1, seq_len=4, seed=0, shuffle=False, repeat=False, encode_fn=encode
    )
  )
  got = stack_rows(batches)
  np.testing.assert_array_equal(got["inputs"][0], encode(b"abcd"))
  np.testing.assert_array_equal(got["segment_ids"][0], [1, 1, 1, 2])
  np.testing.assert_array_equal(got["targets"][0], encode(b"bc").tolist() + [PAD, 4 + ord("e")])
  with pytest.raises(ValueError, match="zero tokens"):
    next(PackedBatches([b"", b""], batch_size=1, seq_len=4, seed=0, encode_fn=encode))


def test_constructor_validation():
  with pytest.raises(ValueError):
    PackedBatches([b"a"], batch_size=0, seq_len=4, seed=0)
  with pytest.raises(ValueError, match="fewer"):
    PackedBatches([b"a"], batch_size=1, seq_len=4, seed=0, process_count=2)


def test_prefetcher_yields_same_batches_and_states():
  docs = make_docs(20, seed=8)
  kwargs = dict(batch_size=2, seq_len=16, seed=3)
  direct = PackedBatches(docs, **kwargs)
  expected = [(next(direct), direct.get_state()) for _ in range(25)]
  with Prefetcher(PackedBatches(docs, **kwargs), size=3) as prefetched:
    for want_batch, want_state in expected:
      batch, state = next(prefetched)
      assert_batches_equal([batch], [want_batch])
      assert state == want_state == prefetched.get_state()


def test_prefetcher_ends_and_propagates_errors():
  docs = make_docs(10)
  it = PackedBatches(docs, batch_size=2, seq_len=16, seed=0, repeat=False)
  n = len(list(PackedBatches(docs, batch_size=2, seq_len=16, seed=0, repeat=False)))
  assert len(list(Prefetcher(it))) == n

  class Broken(list):
    def __getitem__(self, i):
      if i == 3:
        raise OSError("disk on fire")
      return super().__getitem__(i)

  prefetched = Prefetcher(
    PackedBatches(Broken(docs), batch_size=1, seq_len=8, seed=0, shuffle=False)
  )
  with pytest.raises(OSError, match="disk on fire"):
    for _ in prefetched:
      pass
  prefetched.close()


def test_prefetcher_close_with_full_queue():
  p = Prefetcher(PackedBatches(make_docs(10), batch_size=1, seq_len=8, seed=0), size=1)
  next(p)
  p.close()
  assert not p._thread.is_alive()
  with pytest.raises(StopIteration):
    next(p)


def test_unigram_bits_per_byte():
  assert unigram_bits_per_byte([bytes(range(256))]) == pytest.approx(8.0)
  assert unigram_bits_per_byte([b"aaaa", b"aa"]) == pytest.approx(0.0)
  assert unigram_bits_per_byte([b"ab", b"ba", b"zzz"], max_docs=2) == pytest.approx(1.0)
  with pytest.raises(ValueError):
    unigram_bits_per_byte([b""])
