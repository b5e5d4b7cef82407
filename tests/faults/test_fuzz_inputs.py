"""Any input bytes (random, invalid UTF-8, NUL, huge lines) through every input stage: no
crash, and what goes in comes out exactly."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxtok.data import codec, hashing, packing
from jaxtok.patching import rules
from jaxtok.patching.config import PatchingConfig
from jaxtok.patching.layout import layout
from jaxtok.tokenizers import sources
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.tokenizers.targets import KINDS, train_tokenizer

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes of every kind: random (mostly invalid UTF-8), NUL runs, text, and huge single lines.
huge_line = st.builds(
  lambda unit, n: unit * n, st.binary(min_size=1, max_size=7), st.integers(1000, 30_000)
)
any_bytes = st.one_of(
  st.binary(max_size=400),
  st.text(max_size=200).map(str.encode),
  st.integers(0, 300).map(lambda n: b"\x00" * n),
  huge_line,
)


@pytest.mark.fault("fuzz: codec")
@SETTINGS
@given(any_bytes)
def test_codec_round_trips(data):
  ids = codec.encode(data)
  assert ids[0] == codec.BOS_ID and ids[-1] == codec.EOS_ID
  assert ((ids >= codec.OFFSET) & (ids < codec.VOCAB_SIZE)).sum() == len(data)
  assert codec.decode(ids) == data


@pytest.mark.fault("fuzz: packer")
@SETTINGS
@given(
  st.lists(any_bytes, min_size=1, max_size=6),
  st.integers(2, 96),
  st.integers(1, 4),
  st.integers(0, 5),
)
def test_packer_keeps_every_byte_in_order_and_resumes_exactly(docs, seq_len, batch, cut):
  def batches():
    return packing.PackedBatches(
      docs, batch_size=batch, seq_len=seq_len, seed=0, shuffle=False, repeat=False
    )

  pieces = []
  for b in batches():
    for row in range(batch):
      seg, inp, tgt = b["segment_ids"][row], b["inputs"][row], b["targets"][row]
      for s in np.unique(seg[seg > 0]):
        at = np.flatnonzero(seg == s)
        assert (np.diff(at) == 1).all()  # a piece is contiguous
        assert (tgt[at[:-1]] == inp[at[1:]]).all()  # targets are the next inputs
        pieces.append(inp[at])
  stream = np.concatenate(pieces)
  assert stream.tolist() == np.concatenate([codec.encode(d) for d in docs]).tolist()

  it = batches()
  for _ in range(cut):
    next(it, None)
  state = it.get_state()
  again = batches()
  again.set_state(state)
  for a, b in zip(it, again, strict=True):
    for k in a:
      assert np.array_equal(a[k], b[k])


TEXT = [
  "Hello world, this is English text: def f(x): return x * 2",
  "Grüße aus München! Ça va? Straße, naïve café. Русский текст. 日本語のテキスト。",
] * 30


def _views():
  views = {k: ByteTokenizer(train_tokenizer(k, TEXT, 300), name=k) for k in KINDS}
  for name in ("gpt-2", "llama-spm", "bert-bge"):  # real vocabularies, when fetched
    path = sources.llama_cpp_vocab(name)
    if path is not None:
      views[name] = load_tokenizer(path)
  return views


@pytest.fixture(scope="module")
def views():
  return _views()


@pytest.mark.fault("fuzz: byte views")
@SETTINGS
@given(data=any_bytes)
def test_byte_views_of_every_kind_round_trip(views, data):
  for name, view in views.items():
    ids = view.encode(data)
    spelled = view.prefix + data if data else b""  # a dummy-prefix tokenizer spells " " + text
    assert view.decode(ids) == spelled, name
    assert view.lengths[ids].sum() == len(spelled), name


def _packed(draw_docs, seq_len):
  b = next(
    packing.PackedBatches(draw_docs, batch_size=2, seq_len=seq_len + 1, seed=0, shuffle=False)
  )
  return {k: jnp.asarray(v) for k, v in b.items()}


@pytest.mark.fault("fuzz: patchers")
@SETTINGS
@given(
  st.lists(st.binary(max_size=120), min_size=1, max_size=5),
  st.sampled_from(["static", "space", "entropy"]),
  st.sampled_from(["global", "monotonic", "topk"]),
  st.integers(0, 9),
  st.integers(0, 2**31 - 1),
)
def test_patchers_cover_every_byte_once_within_its_document(docs, scheme, rule, max_len, seed):
  b = _packed(docs, 63)
  ids, pos, seg = b["inputs"], b["positions"], b["segment_ids"]
  entropies = jnp.asarray(np.random.default_rng(seed).exponential(1.5, ids.shape), jnp.float32)
  cfg = PatchingConfig.from_dict(
    dict(scheme=scheme, rule=rule, top_k=8, patch_size=3, max_patch_length=max_len, threshold=1.3)
    | ({"entropy_model_workdir": "unused: entropies are given"} if scheme == "entropy" else {})
  )
  starts = rules.patch_starts(cfg, ids, pos, seg, entropies)
  valid = np.asarray(seg > 0)
  s = np.asarray(starts)
  assert not (s & ~valid).any()  # padding starts nothing
  assert (s[valid & (np.asarray(pos) <= 1)]).all()  # BOS and the first byte start patches
  piece_start = valid & (np.asarray(seg) != np.pad(np.asarray(seg)[:, :-1], ((0, 0), (1, 0))))
  assert s[piece_start].all()  # so no patch crosses a document boundary
  t = ids.shape[1] - 1
  lay = layout(starts, seg[:, :t], t, lookahead=True)
  assert np.array_equal(np.asarray(lay.lengths_BxP).sum(1), valid[:, :t].sum(1))
  if max_len:
    assert int(np.asarray(lay.lengths_BxP).max()) <= max_len


def _reference_hash(row, seg, n, f, vocab):
  """BLT's n-gram hash from its definition: h = (Σ_j w_j P_f^j) mod V over the n ids ending
  at i (earlier positions of another document or before the row count 0), in wrapping int64."""
  p, out = hashing.PRIMES[f], []
  for i in range(len(row)):
    h = 0
    for j in range(n):
      k = i - (n - 1 - j)
      w = row[k] if k >= 0 and seg[k] == seg[i] and seg[i] > 0 else 0
      h = (h + max(w, 0) * p**j) % 2**64
    h = h - 2**64 if h >= 2**63 else h
    out.append(h % vocab)
  return out


@pytest.mark.fault("fuzz: hash ids")
@SETTINGS
@given(
  st.lists(st.integers(-1, 259), min_size=1, max_size=40),
  st.integers(1, 8),
  st.integers(0, len(hashing.PRIMES) - 1),
  st.integers(1, 50_000),
  st.integers(0, 2**31 - 1),
)
def test_hash_ids_match_the_definition(row, n, f, vocab, seed):
  seg = np.sort(np.random.default_rng(seed).integers(1, 4, len(row)))
  got = hashing.ngram_hash(np.asarray([row]), n, f, vocab, seg[None])[0]
  assert got.tolist() == _reference_hash(row, seg.tolist(), n, f, vocab)
