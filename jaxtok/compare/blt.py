"""The BLT comparison: patching schemes vs a byte and a BPE transformer at matched training FLOPs.

Steps (each resumable; a finished arm is not retrained):
1. train the entropy model (`config.entropy_model`, a byte transformer config);
2. for entropy patching, calibrate the threshold so that entropy patches have
   `target_bytes_per_patch` bytes on average over a few training batches (the
   BLT paper also picks thresholds for a target patch size; 0 keeps the config's);
3. train every arm of `config.arms` for the number of steps that spends the
   training FLOPs of `config.reference_arm` run for `config.reference_steps`
   steps (training FLOPs = 3 x forward FLOPs/byte x bytes per step x steps);
4. write `compare.json` and `compare.md` (validation BPB, bytes per patch,
   training FLOPs, inference FLOPs/byte, wall time) into the workdir.

Entropy-model FLOPs are reported in their own column (patcher_flops_per_byte)
and not counted in the training budget, as in the paper's accounting.
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

import jax

from jaxtok import paths
from jaxtok.data import corpora, packing
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.flops import transformer_config_flops
from jaxtok.models.transformer import TransformerConfig
from jaxtok.patching import PatchingConfig
from jaxtok.patching import rules as patch_rules
from jaxtok.patching.entropy import per_byte_entropies
from jaxtok.train import prepare, trainer
from jaxtok.train.metrics import markdown_table
from jaxtok.train.tasks import get_task

# What the paper predicts at matched FLOPs (lower BPB first).
PAPER_ORDER = ("blt_entropy", "bpe", "blt_space", "blt_static")


def calibrate_threshold(
  pcfg: PatchingConfig, em: EntropyModel, batches: list[dict], target: float
) -> tuple[float, float]:
  """(threshold, bytes/patch it gives): bisection on the mean patch size of `batches`."""
  if pcfg.rule not in ("global", "monotonic"):
    raise ValueError(f"config.patching.rule={pcfg.rule!r}: only global/monotonic calibrate")
  data = []
  for b in batches:
    h = per_byte_entropies(em.next_entropies(b["inputs"], b["segment_ids"], b["positions"]))
    data.append((h[:, :-1], b["positions"], b["segment_ids"]))

  @jax.jit
  def n_starts(h, pos, seg, theta):
    s = patch_rules.entropy_starts(h, pos, seg, rule=pcfg.rule, threshold=theta)
    return patch_rules.limit_patch_length(s, seg, pcfg.max_patch_length).sum()

  nbytes = sum(int((seg > 0).sum()) for _, _, seg in data)

  def bpp(theta):
    return nbytes / max(1, sum(int(n_starts(h, p, s, theta)) for h, p, s in data))

  lo, hi = (-10.0, 10.0) if pcfg.rule == "monotonic" else (0.0, 10.0)
  for _ in range(30):  # bytes/patch grows with the threshold
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if bpp(mid) < target else (lo, mid)
  theta = (lo + hi) / 2
  return theta, bpp(theta)


def _sample_batches(config, n_bytes: int, encode_fn=None) -> list[dict]:
  """Training batches (not the first ones the run trains on) holding about `n_bytes`."""
  n = max(1, -(-n_bytes // (config.data.batch_size * config.data.seq_len)))
  it = packing.PackedBatches(
    corpora.corpus_for(config.data, "train"),
    batch_size=config.data.batch_size,
    seq_len=config.data.seq_len,
    seed=config.train.seed + 1,  # not the training order's first batches
    encode_fn=encode_fn,
  )
  return [next(it) for _ in range(n)]


def _bytes_per_step(config, task) -> float:
  return config.data.batch_size * config.data.seq_len * task.extra.get("bytes_per_token", 1.0)


def _train(config, workdir: str) -> tuple[dict[str, Any], float]:
  """Trains (or finds finished) a run; returns (results, wall seconds of this call)."""
  path = paths.join(workdir, "results.json")
  if paths.exists(path):
    results = json.loads(paths.read_text(path))
    if results.get("steps") == config.train.steps:
      return results, float(results.get("wall_s", float("nan")))
  t0 = time.perf_counter()
  results = trainer.train(config, workdir)
  wall = time.perf_counter() - t0
  results["wall_s"] = wall
  paths.write_atomic(path, json.dumps(results, indent=2))
  return results, wall


def run(config, workdir: str) -> list[dict[str, Any]]:
  workdir = paths.check(workdir)
  paths.makedirs(workdir)
  arms = [a.strip() for a in config.arm_names.split(",") if a.strip()]
  unknown = [a for a in arms if a not in config.arms]
  if unknown:
    raise ValueError(f"config.arm_names: unknown arm(s) {unknown}; known: {sorted(config.arms)}")
  if config.reference_arm not in arms:
    raise ValueError(f"config.reference_arm={config.reference_arm!r} is not in config.arm_names")
  if config.reference_steps < 1:
    raise ValueError(f"config.reference_steps={config.reference_steps}: must be >= 1")

  # 1. The entropy model.
  em_dir = paths.join(workdir, "entropy_model")
  needs_em = any(config.arms[a].get("patching", {}).get("scheme") == "entropy" for a in arms)
  em_results = None
  if needs_em:
    print(f"== entropy model -> {em_dir}")
    em_results, _ = _train(copy.deepcopy(config.entropy_model), em_dir)

  # 2. Arm configs, with the entropy model and a calibrated threshold.
  cfgs = {}
  calibration = {}
  for a in arms:
    c = copy.deepcopy(config.arms[a])
    if c.get("patching", {}).get("scheme") == "entropy":
      c.patching.entropy_model_workdir = em_dir
      if config.target_bytes_per_patch > 0:
        em = EntropyModel.load(em_dir)
        pcfg = PatchingConfig.from_dict(c.patching)
        theta, got = calibrate_threshold(
          pcfg, em, _sample_batches(c, config.calibration_bytes), config.target_bytes_per_patch
        )
        c.patching.threshold = theta
        calibration[a] = {"threshold": theta, "bytes_per_patch": got}
        print(f"== {a}: threshold {theta:.4f} nats gives {got:.2f} bytes/patch")
    cfgs[a] = c

  # 3. Matched training FLOPs (of each arm's prepared config: measured bytes per patch/token).
  cfgs = {a: prepare.prepare(cfgs[a], paths.join(workdir, a)) for a in arms}
  tasks = {a: get_task(cfgs[a]) for a in arms}
  ref = config.reference_arm
  budget = tasks[ref].flops.train * _bytes_per_step(cfgs[ref], tasks[ref]) * config.reference_steps
  rows = []
  for a in arms:
    c, task = cfgs[a], tasks[a]
    per_step = task.flops.train * _bytes_per_step(c, task)
    steps = max(1, round(budget / per_step))
    c.train.steps = steps
    c.train.warmup_steps = max(1, round(config.warmup_fraction * steps))
    c.train.eval_every = 0
    c.train.ckpt_every = max(1, steps // 2)
    print(f"== {a}: {steps} steps ({per_step * steps:.3g} training FLOPs)")
    r, wall = _train(c, paths.join(workdir, a))
    patcher = 0.0
    if c.get("patching", {}).get("scheme") == "entropy":
      em_cfg = TransformerConfig.from_dict(config.entropy_model.model)
      patcher = transformer_config_flops(em_cfg, c.data.seq_len).forward
    bpp = r.get("val_bytes_per_patch", r.get("bytes_per_token", 1.0))
    rows.append(
      {
        "arm": a,
        "val_bpb": r["val_bpb"],
        "bytes_per_patch": bpp,
        "params": r["parameters"],
        "steps": steps,
        "train_flops": per_step * steps,
        "inference_flops_per_byte": r["inference_flops_per_byte"],
        "patcher_flops_per_byte": patcher,
        "train_bytes_per_s": r["bytes_per_s"],
        "wall_s": wall,
      }
    )
  _write(config, workdir, rows, calibration, em_results)
  return rows


def _ordering(rows) -> dict[str, Any]:
  by_bpb = [r["arm"] for r in sorted(rows, key=lambda r: r["val_bpb"])]
  predicted = [a for a in PAPER_ORDER if a in by_bpb]
  observed = [a for a in by_bpb if a in predicted]
  return {"observed": by_bpb, "paper": predicted, "paper_order_holds": observed == predicted}


def _write(config, workdir, rows, calibration, em_results) -> None:
  order = _ordering(rows)
  out = {
    "rows": rows,
    "ordering": order,
    "threshold_calibration": calibration,
    "entropy_model_val_bpb": None if em_results is None else em_results["val_bpb"],
    "config": json.loads(config.to_json_best_effort()),
  }
  paths.write_atomic(paths.join(workdir, "compare.json"), json.dumps(out, indent=2))
  table = markdown_table(
    [
      {
        k: (f"{v:.3g}" if isinstance(v, float) and (abs(v) >= 1e5 or math.isnan(v)) else v)
        for k, v in r.items()
      }
      for r in rows
    ]
  )
  lines = [
    "# BLT comparison at matched training FLOPs",
    "",
    table,
    "",
    f"Ordering by validation BPB: {' < '.join(order['observed'])}.",
    f"Paper's prediction: {' < '.join(order['paper'])} "
    f"({'holds' if order['paper_order_holds'] else 'does not hold'} here).",
  ]
  if em_results is not None:
    lines.append(f"Entropy model validation BPB: {em_results['val_bpb']:.3f}.")
  for a, cal in calibration.items():
    lines.append(
      f"{a}: threshold {cal['threshold']:.4f} nats, {cal['bytes_per_patch']:.2f} bytes/patch "
      "on the calibration batches."
    )
  paths.write_atomic(paths.join(workdir, "compare.md"), "\n".join(lines) + "\n")
  print("\n".join(lines))
