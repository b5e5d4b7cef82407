"""The BLT training step's fast paths compute what the formulations they replace compute:
own-patch cross-attention by gathers (vs the segment mask through `attention`), and the
patch slots a batch needs (vs the model's `max_patches`). Losses and gradients."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx
from test_blt import make, random_entropy_model, rows_batch

from jaxtok import patching
from jaxtok.data import codec
from jaxtok.models.blt import BLT, blt_loss
from jaxtok.patching import PatchingConfig
from jaxtok.train.blt_task import BLTBatches

TEXT = (
  b"def f(x):\n    return x * 2  # doubled\n\nclass A:\n    pass\n"
  b"The quick brown fox jumps over the lazy dog; 0123456789.\n"
)


def batch_of(pcfg, cfg, t=48):
  """Three rows: two documents packed, a document then padding, one long document."""
  docs = [codec.encode(TEXT[i : i + n]) for i, n in ((0, 20), (30, 30), (10, 17), (50, 60))]
  rows, segs, poss = [], [], []
  for pieces in ((docs[0], docs[1]), (docs[2],), (docs[3],)):
    ids = np.concatenate(pieces)[:t]
    seg = np.concatenate([np.full(len(p), i + 1) for i, p in enumerate(pieces)])[:t]
    pos = np.concatenate([np.arange(len(p)) for p in pieces])[:t]
    pad = t - len(ids)
    rows.append(np.pad(ids, (0, pad), constant_values=-1))
    segs.append(np.pad(seg, (0, pad)))
    poss.append(np.pad(pos, (0, pad)))
  ids, seg = np.stack(rows), np.stack(segs)
  targets = np.where((seg > 0) & (np.roll(seg, -1, axis=1) == seg), np.roll(ids, -1, axis=1), -1)
  targets[:, -1] = -1
  host = BLTBatches(pcfg, cfg, entropy_model=random_entropy_model())
  return host(rows_batch(ids, seg, np.stack(poss).astype(np.int32), targets))


def loss_and_grads(model, batch):
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(p):
    sums = blt_loss(nnx.merge(graphdef, p), batch)
    return sums["loss_sum"], sums

  return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)


def assert_same(a, b, rtol=2e-5, atol=2e-6):
  (va, sa), ga = a
  (vb, sb), gb = b
  np.testing.assert_allclose(va, vb, rtol=rtol)
  for k in sa:
    np.testing.assert_allclose(sa[k], sb[k], rtol=rtol, err_msg=k)
  for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol)


def test_gather_cross_attention_equals_the_masked_formulation():
  pcfg = PatchingConfig(scheme="static", patch_size=3, slot_bucket=0)
  model, cfg = make(pcfg, max_patches=12)  # row 2 overflows its 12 slots
  batch = batch_of(pcfg, cfg)
  slow = BLT(dataclasses.replace(cfg, cross_attn_impl="mask"), rngs=nnx.Rngs(0))
  fast, slow_out = loss_and_grads(model, batch), loss_and_grads(slow, batch)
  assert float(fast[0][1]["overflow_sum"]) > 0
  assert_same(fast, slow_out)


def test_patch_lengths_are_the_layouts_and_the_bucketed_slots_change_nothing():
  pcfg = PatchingConfig(scheme="static", patch_size=2, slot_bucket=8)
  model, cfg = make(pcfg, max_patches=40)
  batch = batch_of(pcfg, cfg)
  most = int(((batch["patch_starts"][:, :-1] > 0) & (batch["segment_ids"] > 0)).sum(1).max())
  p = batch["patch_lengths"].shape[1]
  assert p == -(-most // 8) * 8 and p < cfg.max_patches  # 24 patches -> 24 slots, not 40
  lay = patching.layout(batch["patch_starts"], batch["segment_ids"], p, lookahead=True)
  np.testing.assert_array_equal(batch["patch_lengths"], lay.lengths_BxP)
  full = {k: v for k, v in batch.items() if k != "patch_lengths"}
  assert_same(loss_and_grads(model, batch), loss_and_grads(model, full))
  # Slots are capped at max_patches (where rows overflow, as they did before).
  _, scfg = make(pcfg, max_patches=10)
  assert batch_of(pcfg, scfg)["patch_lengths"].shape[1] == 10


def test_slot_bucket_must_not_be_negative():
  with pytest.raises(ValueError, match="slot_bucket"):
    PatchingConfig(scheme="static", slot_bucket=-1).validate()


def test_every_process_of_a_multi_process_run_uses_all_slots(monkeypatch):
  """Batch-sized slots would give each process its own program (mismatched collectives)."""
  pcfg = PatchingConfig(scheme="static", patch_size=2, slot_bucket=8)
  _, cfg = make(pcfg, max_patches=40)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert "patch_lengths" not in batch_of(pcfg, cfg)
