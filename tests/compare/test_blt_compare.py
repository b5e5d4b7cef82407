"""The comparison experiment: threshold calibration (fast), the small preset (slow)."""

import json
import os

import numpy as np
import pytest
from flax import nnx

from jaxtok.compare import blt as blt_compare
from jaxtok.data import codec
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import PatchingConfig
from jaxtok.patching.entropy import per_byte_entropies


def test_calibrated_threshold_gives_the_target_patch_size():
  cfg = TransformerConfig(d_model=32, n_layers=1, n_heads=2, mlp_dim=64)
  em = EntropyModel(Transformer(cfg, rngs=nnx.Rngs(0)), seq_len=64)
  rng = np.random.default_rng(0)
  batches = []
  for _ in range(2):
    ids = np.stack([codec.encode(rng.bytes(63), add_eos=False) for _ in range(3)])
    pos = np.broadcast_to(np.arange(64, dtype=np.int32), ids.shape)
    batches.append({"inputs": ids, "positions": pos, "segment_ids": np.ones_like(ids)})
  pcfg = PatchingConfig(scheme="entropy", entropy_model_workdir="-")
  theta, got = blt_compare.calibrate_threshold(pcfg, em, batches, target=3.0)
  # Independently: forced starts at positions 0, 1, then one per byte with H > θ.
  n_bytes = n_patches = 0
  for b in batches:
    h = per_byte_entropies(em.next_entropies(b["inputs"]))[:, :-1]
    n_bytes += h.size
    n_patches += 2 * h.shape[0] + int((h[:, 2:] > theta).sum())
  assert got == pytest.approx(n_bytes / n_patches)
  assert got == pytest.approx(3.0, rel=0.1)


@pytest.mark.slow
def test_small_preset_end_to_end(tmp_path):
  from configs import blt_compare as preset

  c = preset.get_config("small")
  for a in list(c.arms) + ["entropy_model"]:
    node = c.entropy_model if a == "entropy_model" else c.arms[a]
    node.data.data_dir = str(tmp_path / "tfds")
  rows = blt_compare.run(c, str(tmp_path / "cmp"))
  assert [r["arm"] for r in rows] == c.arm_names.split(",")
  flops = [r["train_flops"] for r in rows]
  assert max(flops) / min(flops) < 1.05  # matched training FLOPs
  assert all(r["val_bpb"] < 8.0 for r in rows)
  out = json.load(open(tmp_path / "cmp" / "compare.json"))
  assert set(out["ordering"]) == {"observed", "paper", "paper_order_holds"}
  assert os.path.exists(tmp_path / "cmp" / "compare.md")
