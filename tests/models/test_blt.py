"""BLT model: causality with entropy patching, padding and empty patches, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.data import codec
from jaxtok.models.blt import BLT, BLTConfig, blt_eval_loss, blt_flops, blt_loss, flops_by_part
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import PatchingConfig
from jaxtok.train.blt_task import BLTBatches

SMALL = dict(
  d_local=32,
  d_global=48,
  n_layers_encoder=2,
  n_layers_global=2,
  n_layers_decoder=2,
  n_heads_local=2,
  n_heads_global=4,
  cross_attn_heads=2,
  hash_vocab=97,
  hash_ngram_sizes=(2, 3, 4),
  local_window=6,
)


def _forward(graphdef, params, batch):
  keys = ("patch_starts", "hash_ids", "segment_ids", "positions")
  return nnx.merge(graphdef, params)(batch["inputs"], **{k: batch[k] for k in keys})


# Jitted once per model structure and shape: tests share compilations.
_forward_jit = jax.jit(_forward, static_argnums=0)


def forward(model, batch):
  graphdef, params = nnx.split(model, nnx.Param)
  return np.asarray(_forward_jit(graphdef, params, batch))


def random_entropy_model(seed=1):
  cfg = TransformerConfig(d_model=32, n_layers=2, n_heads=2, mlp_dim=64, sliding_window=16)
  return EntropyModel(Transformer(cfg, rngs=nnx.Rngs(seed)), seq_len=64)


def make(pcfg, max_patches, **kw):
  cfg = BLTConfig(**{**SMALL, **kw}, max_patches=max_patches, lookahead=pcfg.lookahead)
  return BLT(cfg, rngs=nnx.Rngs(0)), cfg


def rows_batch(ids_BxT, segment_ids=None, positions=None, targets=None):
  ids = np.asarray(ids_BxT, np.int32)
  b, t = ids.shape
  seg = np.ones((b, t), np.int32) if segment_ids is None else np.asarray(segment_ids, np.int32)
  pos = np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)) if positions is None else positions
  if targets is None:
    targets = np.concatenate([ids[:, 1:], np.full((b, 1), -1, np.int32)], axis=1)
  return {"inputs": ids, "targets": targets, "segment_ids": seg, "positions": np.asarray(pos)}


def entropy_threshold(em, ids):
  """The median next-byte entropy of a random model on `ids`: boundaries fall both ways."""
  return float(np.median(em.next_entropies(ids[None])))


@pytest.fixture(scope="module")
def em():
  return random_entropy_model()


@pytest.mark.parametrize(
  "scheme,rule",
  [
    ("entropy", "global"),
    ("entropy", "monotonic"),
    ("space", "end"),
    ("space", "start"),
    ("static", ""),
  ],
)
def test_blt_is_causal_even_where_boundaries_depend_on_bytes(em, scheme, rule):
  rng = np.random.default_rng(0)
  text = rng.choice(list(b"ab cd.e fgh\n"), 39).astype(np.uint8).tobytes()
  ids = codec.encode(text, add_eos=False)  # 40 ids
  kw = dict(scheme=scheme, entropy_model_workdir="-", max_patch_length=5, patch_size=3)
  if scheme == "space":
    kw.update(space_rule=rule)
  if scheme == "entropy":
    kw.update(rule=rule, threshold=entropy_threshold(em, ids) if rule == "global" else 0.0)
  pcfg = PatchingConfig(**kw)
  model, cfg = make(pcfg, max_patches=40)
  host = BLTBatches(pcfg, cfg, entropy_model=em)

  def run(x):
    b = host(rows_batch(x[None]))
    return forward(model, b)[0], b["patch_starts"][0]

  base, base_starts = run(ids)
  boundaries_moved = 0
  for t in range(1, 40, 3):
    x = ids.copy()
    x[t] = codec.OFFSET + (ord(" ") if x[t] != codec.OFFSET + ord(" ") else ord("z"))
    out, starts = run(x)
    # Logits at positions < t predict bytes <= t: none may change.
    np.testing.assert_allclose(out[:t], base[:t], atol=1e-6, rtol=0)
    assert not np.allclose(out[t], base[t], atol=1e-4)  # byte t itself does matter
    boundaries_moved += int((starts != base_starts).any())
  if scheme != "static":
    assert boundaries_moved > 0  # the test exercised byte-dependent boundaries


def test_space_rule_start_with_the_lookahead_alignment_would_leak_the_label(em):
  # Why the "start" space rule reads the patch before its own: with the lookahead
  # alignment, the latent byte t reads depends on whether byte t+1 is a space. (The
  # reference's "end" rule does not: its boundary before t+1 depends on bytes <= t.)
  pcfg = PatchingConfig(scheme="space", space_rule="start")
  ids = codec.encode(b"abc defg hij" * 4, add_eos=False)[:40]
  leaky, cfg = make(pcfg, max_patches=40)
  leaky.cfg = BLTConfig(**{**SMALL}, max_patches=40, lookahead=True)
  host = BLTBatches(pcfg, cfg)

  def run(x):
    return forward(leaky, host(rows_batch(x[None])))

  x = ids.copy()
  x[7] = codec.OFFSET + ord(" ")  # 'f' -> ' ' makes byte 7 a boundary
  assert not np.allclose(run(x)[0, 6], run(ids)[0, 6], atol=1e-6)


def test_no_nan_with_padding_empty_patches_and_overflow(em):
  # Threshold 0: every byte is a patch. Row 0: two documents, 29 patches in 20 slots
  # (overflow); row 1: a short document then padding (empty slots); row 2: all padding.
  pcfg = PatchingConfig(scheme="entropy", entropy_model_workdir="-", threshold=0.0)
  a, b = codec.encode(b"first doc"), codec.encode(b"and a second")
  t = 32
  row0 = np.concatenate([a, b, np.full(t - len(a) - len(b), -1)])
  seg0 = np.asarray([1] * len(a) + [2] * len(b) + [0] * (t - len(a) - len(b)))
  pos0 = np.concatenate([np.arange(len(a)), np.arange(len(b)), np.zeros(t - len(a) - len(b))])
  ids = np.stack([row0, np.concatenate([a, np.full(t - len(a), -1)]), np.full(t, -1)])
  seg = np.stack([seg0, (ids[1] >= 0).astype(int), np.zeros(t, int)])
  pos = np.stack([pos0, np.arange(t), np.zeros(t)]).astype(np.int32)
  targets = np.where((seg > 0) & (np.roll(seg, -1, axis=1) == seg), np.roll(ids, -1, axis=1), -1)
  targets[:, -1] = -1
  model, cfg = make(pcfg, max_patches=20)
  host = BLTBatches(pcfg, cfg, entropy_model=em)
  batch = {k: jnp.asarray(v) for k, v in host(rows_batch(ids, seg, pos, targets)).items()}
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(p):
    sums = blt_loss(nnx.merge(graphdef, p), batch)
    return sums["loss_sum"], sums

  (value, sums), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert np.isfinite(float(value))
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  assert float(sums["tokens"]) == (targets >= 0).sum()
  assert float(sums["overflow_sum"]) == len(a) + len(b) - 20
  assert float(sums["patches"]) == 20 + len(a)
  assert float(sums["patch_bytes"]) + float(sums["overflow_sum"]) == (seg > 0).sum()


def test_documents_in_a_row_do_not_see_each_other(em):
  pcfg = PatchingConfig(scheme="static", patch_size=3)
  a, b = codec.encode(b"some text"), codec.encode(b"other words here")
  pad = 40 - len(a) - len(b)
  row = np.concatenate([a, b, np.full(pad, -1)])[None]
  seg = np.asarray([[1] * len(a) + [2] * len(b) + [0] * pad])
  pos = np.concatenate([np.arange(len(a)), np.arange(len(b)), np.zeros(pad, int)])[None]
  model, cfg = make(pcfg, max_patches=40)
  host = BLTBatches(pcfg, cfg)
  packed = forward(model, host(rows_batch(row, seg, pos)))
  alone_row = np.concatenate([b, np.full(40 - len(b), -1)])[None]
  alone_seg = (alone_row >= 0).astype(np.int32)
  alone = forward(model, host(rows_batch(alone_row, alone_seg)))
  np.testing.assert_allclose(packed[0, len(a) : len(a) + len(b)], alone[0, : len(b)], atol=1e-5)


def test_latent_positions_restart_per_document():
  # RoPE is relative, so only float error tells the positions: at slot offsets in the
  # thousands it reaches ~1e-5 when positions are row slots; restarted, the packed
  # document computes at the same positions as alone (reduction order: ~1e-6).
  model, _ = make(PatchingConfig(scheme="static"), max_patches=8)
  off, n = 4000, 40
  h = np.random.default_rng(0).normal(size=(1, off + n, SMALL["d_global"])).astype(np.float32)
  seg = np.asarray([[1] * off + [2] * n])
  packed = np.asarray(model.latent_states(jnp.asarray(h), jnp.asarray(seg)))[0, off:]
  alone = np.asarray(model.latent_states(jnp.asarray(h[:, off:]), jnp.asarray(seg[:, off:])))[0]
  np.testing.assert_allclose(packed, alone, atol=4e-6, rtol=0)


def test_a_documents_evaluation_does_not_depend_on_the_documents_packed_before_it(em):
  # Entropy patches (content-dependent counts) and 16 slots for a 64-byte row: behind most
  # of these documents the training slots overflow. Evaluation has a slot per byte.
  t, p = 64, 16
  rng = np.random.default_rng(3)
  text = lambda n: rng.choice(list(b"ab cd.e fgh\n"), n).astype(np.uint8).tobytes()
  d = codec.encode(text(20))
  pcfg = PatchingConfig(
    scheme="entropy", entropy_model_workdir="-", threshold=entropy_threshold(em, d)
  )
  model, cfg = make(pcfg, max_patches=p)
  host = BLTBatches(pcfg, cfg, entropy_model=em)
  rows, segs, poss, tgts = [], [], [], []
  for before in [codec.encode(text(n)) for n in (0, 5, 17, 30, 30, 38)]:
    pad = t - len(before) - len(d)
    rows.append(np.concatenate([before, d, np.full(pad, -1)]))
    segs.append([1] * len(before) + [2 if len(before) else 1] * len(d) + [0] * pad)
    poss.append(np.concatenate([np.arange(len(before)), np.arange(len(d)), np.zeros(pad, int)]))
    # Only the document's own targets count.
    tgts.append(np.concatenate([np.full(len(before), -1), d[1:], np.full(pad + 1, -1)]))
  batch = host(rows_batch(np.stack(rows), np.stack(segs), np.stack(poss), np.stack(tgts)))
  graphdef, params = nnx.split(model, nnx.Param)

  @jax.jit
  def per_row(params, row):
    return blt_eval_loss(nnx.merge(graphdef, params), jax.tree.map(lambda x: x[None], row))

  sums = [per_row(params, {k: v[i] for k, v in batch.items()}) for i in range(len(rows))]
  losses = [float(s["loss_sum"]) for s in sums]
  assert all(float(s["tokens"]) == len(d) - 1 for s in sums)
  np.testing.assert_allclose(losses, losses[0], rtol=1e-5)
  assert max(float(s["overflow_sum"]) for s in sums) > 0  # training slots would overflow


def test_flops_split_and_scaling():
  cfg = BLTConfig(**SMALL)
  f4, f8 = blt_flops(cfg, 512, 4.0), blt_flops(cfg, 512, 8.0)
  p4, p8 = flops_by_part(f4), flops_by_part(f8)
  assert set(p4) == {"encoder", "global", "decoder"}
  # By hand, per patch of the latent model (d=48, 2 layers, SwiGLU 128, 128 patches of 4 bytes):
  # projections 2*2*(4*48*48) + MLP 2*2*(3*48*128) + scores 2*2*2*48*64.5 + to_global 2*64*48.
  per_patch = 2 * 2 * 4 * 48 * 48 + 2 * 2 * 3 * 48 * 128 + 2 * 2 * 2 * 48 * 64.5 + 2 * 64 * 48
  assert p4["global"] == pytest.approx(per_patch / 4)
  assert p8["encoder"] < p4["encoder"] and p8["decoder"] < p4["decoder"]
  assert f4.forward == pytest.approx(sum(p4.values()))


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match="config.model.n_heads_local"):
    BLTConfig.from_dict({**SMALL, "n_heads_local": 5})
  with pytest.raises(ValueError, match="unknown field"):
    BLTConfig.from_dict({**SMALL, "d_lokal": 5})
