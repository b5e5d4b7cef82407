"""Cached BLT generation = the uncached reference (re-patch and re-run the prefix per byte),
with the prompt prefilled in one forward or fed byte by byte; in batches of prompts of
different lengths, every row equals its own reference. Bytes and log-probs."""

import numpy as np
import pytest
from flax import nnx

from jaxtok.data import codec
from jaxtok.generation import (
  BLTGenerator,
  SamplingConfig,
  UncachedBLT,
  generate_blt_uncached,
)
from jaxtok.generation.sampling import row_keys
from jaxtok.models.blt import BLT, BLTConfig
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import PatchingConfig

SMALL = dict(
  d_local=32,
  d_global=48,
  n_layers_encoder=1,
  n_layers_global=1,
  n_layers_decoder=1,
  n_heads_local=2,
  n_heads_global=4,
  cross_attn_heads=2,
  hash_vocab=97,
  hash_ngram_sizes=(2, 3, 5),
  local_window=8,  # shorter than the sequences: the rings wrap around
)
PROMPT = b"def f(x):\n  return"
SAMPLED = SamplingConfig(temperature=1.0, top_p=0.9)


@pytest.fixture(scope="module")
def em():
  cfg = TransformerConfig(d_model=32, n_layers=2, n_heads=2, mlp_dim=64, sliding_window=12)
  return EntropyModel(Transformer(cfg, rngs=nnx.Rngs(7)), seq_len=64)


def threshold_for(em):
  """Median entropy of the random entropy model on the prompt: boundaries fall both ways."""
  x = np.full((1, 64), codec.PAD_ID, np.int32)  # the reference's padded shape: no recompilation
  ids = codec.encode(PROMPT)
  x[0, : len(ids)] = ids
  return float(np.median(em.next_entropies(x, (x >= 0).astype(np.int32))[0, : len(ids)]))


CASES = {
  # Lookahead: the entropy model decides the next boundary before the byte is sampled.
  "entropy-all-layers": (
    dict(scheme="entropy", max_patch_length=6),
    dict(
      n_layers_encoder=2,
      n_layers_decoder=2,
      cross_attn_all_layers_encoder=True,
      cross_attn_all_layers_decoder=True,
    ),
  ),
  # No max_patch_length: the open patch is bounded by the cache's columns only.
  "entropy-monotonic": (dict(scheme="entropy", rule="monotonic", threshold=0.005), {}),
  # The reference rule: byte t-1 decides whether t starts a patch (lookahead).
  "space": (dict(scheme="space", max_patch_length=5), dict(cross_attn_k=1, d_global=64)),
  # No lookahead: a byte's own value decides its boundary.
  "space-start": (
    dict(scheme="space", space_rule="start", max_patch_length=5),
    dict(cross_attn_k=1, d_global=64),
  ),
  "static": (dict(scheme="static", patch_size=3), dict(hash_vocab=0)),
}


def make(case, em):
  pkw, mkw = CASES[case]
  pcfg = PatchingConfig(**{"entropy_model_workdir": "-", "threshold": threshold_for(em), **pkw})
  cfg = BLTConfig(**{**SMALL, **mkw}, max_patches=8, lookahead=pcfg.lookahead)
  return BLT(cfg, rngs=nnx.Rngs(0)), pcfg


# Every scheme in the default run; the variants of one (monotonic, space with a length limit)
# behind -m slow.
SLOW_CASES = ("entropy-monotonic", "space")


@pytest.mark.parametrize(
  "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in sorted(CASES)]
)
def test_prefill_and_byte_feed_equal_the_uncached_reference(em, case):
  model, pcfg = make(case, em)
  n = 20
  ref = UncachedBLT(model, pcfg, em, pad_to=64)
  want = generate_blt_uncached(ref, PROMPT, n, sampling=SAMPLED, key=row_keys(5, 1)[0])
  assert len(want.text) == n  # no early EOS: every byte is compared
  for prefill in (True, False):
    got = BLTGenerator(model, pcfg, em, prefill=prefill).generate(
      [PROMPT], n, sampling=SAMPLED, seed=5, chunk=8
    )[0]
    assert got.text == want.text, prefill
    np.testing.assert_allclose(got.logprobs, want.logprobs, atol=2e-4)
    assert got.stop_reason == "length"


def test_batch_rows_of_different_lengths_each_equal_their_reference(em):
  """Left padding changes nothing: a BOS-only prompt, invalid UTF-8 and random bytes together,
  each row sampled with its own key, equal each prompt decoded alone by the reference."""
  model, pcfg = make("entropy-all-layers", em)
  rng = np.random.default_rng(0)
  prompts = [b"", rng.integers(0, 256, 23).astype(np.uint8).tobytes(), b"\xff\xfe\x80 x", PROMPT]
  seeds, n = [11, 12, 13, 14], 12
  sampling = SamplingConfig(temperature=1.0, top_k=40)
  got = BLTGenerator(model, pcfg, em).generate(prompts, n, sampling=sampling, seed=seeds, chunk=5)
  ref = UncachedBLT(model, pcfg, em, pad_to=64)
  keys = row_keys(seeds, len(prompts))
  for b, prompt in enumerate(prompts):
    want = generate_blt_uncached(ref, prompt, n, sampling=sampling, key=keys[b])
    assert got[b].text == want.text, b
    np.testing.assert_allclose(got[b].logprobs, want.logprobs, atol=2e-4)


def _assert_caches_equal(a, b):
  """Two decoding states hold the same caches (slots past what a row uses may differ)."""
  sa, sb = a.state, b.state
  np.testing.assert_allclose(a.logits_BxV, b.logits_BxV, atol=2e-4)
  assert int(sa.col) == int(sb.col)
  for f in ("position", "prev_spacelike", "run"):
    np.testing.assert_array_equal(getattr(sa.patcher, f), getattr(sb.patcher, f))
  np.testing.assert_allclose(sa.patcher.prev_entropy, sb.patcher.prev_entropy, atol=1e-4)
  np.testing.assert_array_equal(sa.next_start_B, sb.next_start_B)
  rings = [(sa.enc_cache, sb.enc_cache), (sa.dec_cache, sb.dec_cache)]
  if sa.em_cache is not None:
    rings.append((sa.em_cache, sb.em_cache))
  for ra, rb in rings:
    np.testing.assert_array_equal(ra.pos, rb.pos)
    np.testing.assert_allclose(ra.k, rb.k, atol=2e-4)
    np.testing.assert_allclose(ra.v, rb.v, atol=2e-4)
  n = int(sa.patch_len_B[0])
  assert n == int(sb.patch_len_B[0])
  np.testing.assert_allclose(sa.pool_BxD, sb.pool_BxD, atol=2e-4)
  for x, y in zip(sa.patch_kv, sb.patch_kv):
    np.testing.assert_allclose(x[:, :, :n], y[:, :, :n], atol=2e-4)
  end = int(sa.lat_cache.end[0])
  assert end == int(sb.lat_cache.end[0]) and end > 2  # some patches closed in the prompt
  np.testing.assert_allclose(sa.lat_cache.k[..., :end, :], sb.lat_cache.k[..., :end, :], atol=2e-4)
  np.testing.assert_allclose(sa.dec_kv[0], sb.dec_kv[0], atol=2e-4)
  np.testing.assert_array_equal(sa.has_latent_B, sb.has_latent_B)
  if sa.history_BxW is not None:
    np.testing.assert_array_equal(sa.history_BxW, sb.history_BxW)


@pytest.mark.parametrize("case", ["entropy-all-layers", "space"])
def test_prefill_fills_every_cache_as_feeding_byte_by_byte_does(em, case):
  model, pcfg = make(case, em)
  prompts = [PROMPT, b"x = [1, 2, 3]\nprint(x)"[: len(PROMPT)]]
  ids = np.stack([codec.encode(p, add_eos=False) for p in prompts])
  start, columns = np.zeros(2, np.int32), 32
  fed = BLTGenerator(model, pcfg, em, prefill=False).prefill(ids, start, columns)
  prefilled = BLTGenerator(model, pcfg, em).prefill(ids, start, columns)
  _assert_caches_equal(prefilled, fed)


def test_bad_input_is_named(em):
  model, pcfg = make("space", em)
  gen = BLTGenerator(model, pcfg, max_len=24)
  with pytest.raises(ValueError, match="max_new_bytes"):
    gen.generate([PROMPT], 0)
  with pytest.raises(ValueError, match="max_len=24"):
    gen.generate([PROMPT], 8)
  with pytest.raises(ValueError, match="entropy_model"):
    BLTGenerator(*make("entropy-monotonic", em))
  topk = PatchingConfig(scheme="entropy", rule="topk", top_k=2, entropy_model_workdir="-")
  with pytest.raises(ValueError, match="top-k"):
    BLTGenerator(model, topk, em)
