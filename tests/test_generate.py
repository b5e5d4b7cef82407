"""Cached BLT generation produces exactly the bytes of the uncached reference decode."""

import numpy as np
import pytest
from flax import nnx

from jaxtok import generate
from jaxtok.data import codec
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
  "entropy-monotonic": (dict(scheme="entropy", rule="monotonic", threshold=0.005), {}),
  # No lookahead: a byte's own value decides its boundary.
  "space": (dict(scheme="space", max_patch_length=5), dict(cross_attn_k=1, d_global=64)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_generation_equals_uncached(em, case):
  pkw, mkw = CASES[case]
  pkw = {"entropy_model_workdir": "-", "threshold": threshold_for(em), **pkw}
  pcfg = PatchingConfig(**pkw)
  cfg = BLTConfig(**{**SMALL, **mkw}, max_patches=8, lookahead=pcfg.lookahead)
  model = BLT(cfg, rngs=nnx.Rngs(0))
  n = 24
  gen = generate.BLTGenerator(model, pcfg, em, max_len=len(PROMPT) + 1 + n)
  ref = generate.UncachedBLT(model, pcfg, em, pad_to=64)
  sampling = dict(temperature=1.0, top_p=0.9)
  kw = dict(entropy_model=em, seed=3, **sampling)
  cached = generate.generate_blt(model, pcfg, PROMPT, n, generator=gen, **kw)
  reference = generate.generate_blt_uncached(model, pcfg, PROMPT, n, reference=ref, **kw)
  assert cached == reference
  # The logits agree too, not only the sampled bytes.
  hw = generate._HashWindow(cfg)
  st = gen.init()
  ids = list(codec.encode(PROMPT + cached, add_eos=False))
  for i, b in enumerate(ids):
    st, _, logits = gen.step(st, b, hw.push(b), generate.jax.random.PRNGKey(0), **sampling)
    if i % 7 == 3 or i == len(ids) - 1:
      want = ref.next_logits(np.asarray(ids[: i + 1], np.int32))
      np.testing.assert_allclose(np.asarray(logits), np.asarray(want), atol=2e-4, rtol=1e-4)


def test_greedy_and_sampling_differ_and_top_p_one_is_plain_sampling():
  logits = generate.jax.numpy.asarray(np.random.default_rng(0).normal(size=260) * 3)
  key = generate.jax.random.PRNGKey(1)
  greedy = int(generate.sample(logits, key, 0.0, 1.0))
  masked = np.where(generate._ALLOWED, np.asarray(logits), -np.inf)
  assert greedy == int(np.argmax(masked))
  # top_p tiny keeps only the most likely id: sampling becomes greedy.
  assert int(generate.sample(logits, key, 1.0, 1e-6)) == greedy
  draws = {
    int(generate.sample(logits, generate.jax.random.PRNGKey(s), 1.0, 1.0)) for s in range(20)
  }
  assert len(draws) > 1 and all(generate._ALLOWED[d] for d in draws)


def test_transformer_generation_uses_its_cache():
  cfg = TransformerConfig(d_model=32, n_layers=2, n_heads=2, mlp_dim=64)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  out = generate.generate_transformer(model, b"abc", 10)
  # Greedy from the full forward, byte by byte (padded to one length: one compilation).
  fwd = generate.jax.jit(lambda x, seg: model(x, segment_ids=seg))
  ids = list(codec.encode(b"abc", add_eos=False))
  want = []
  for _ in range(10):
    x = np.full((1, 16), codec.PAD_ID, np.int32)
    x[0, : len(ids)] = ids
    logits = np.asarray(fwd(x, (x >= 0).astype(np.int32)))[0, len(ids) - 1]
    nxt = int(np.argmax(np.where(generate._ALLOWED, logits, -np.inf)))
    if nxt == codec.EOS_ID:
      break
    want.append(nxt)
    ids.append(nxt)
  assert out == codec.decode(np.asarray(want))
