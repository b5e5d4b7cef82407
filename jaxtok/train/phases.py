"""Training phases: consecutive stretches of one trainer run.

Each phase has its own objective, batch layout (a host transform of the packed
batch), step count and optimizer: entering a phase keeps the weights, starts a
fresh optimizer state and learning-rate schedule (warm-up included), and reads
on from where the data iterator stopped. A plain run is one phase named
"train"; patch-level training (`config.train.patch_level`) is a patch phase
followed by a token phase. Metrics are logged under "<phase name>/".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from jaxtok.eval.flops import Flops
from jaxtok.train.steps import LossFn


@dataclasses.dataclass
class Phase:
  name: str  # metric prefix, "<name>/loss"
  steps: int  # optimizer steps
  loss_fn: LossFn
  flops: Flops  # forward FLOPs per byte of training data in this phase
  transform: Callable[[dict], dict] | None = None  # packed host batch -> this phase's batch
  cost: float = 1.0  # cost of a step relative to a step of the last phase (for the report)


def make_phases(task, config) -> list[Phase]:
  """The phases `config` asks for; phases with no steps are left out."""
  pl = config.train.get("patch_level")
  if pl is not None and pl.get("K", 0) and pl.get("fraction", 0.0):
    from jaxtok.train import patch_level  # imports this module

    phases = patch_level.make_phases(task, config)
  else:
    phases = [Phase("train", config.train.steps, task.loss_fn, task.flops)]
  return [p for p in phases if p.steps > 0]


def new_stats() -> dict[str, float]:
  """Per-phase counters, kept in checkpoints so that a resumed run reports whole phases."""
  return dict(bytes=0.0, tokens=0.0, time=0.0, timed_steps=0.0)


def report(phases: list[Phase], stats: list[dict[str, float]]) -> dict[str, Any]:
  """Cost of a multi-phase run relative to running all its steps as the last phase.

  relative_cost counts a step of phase i at `cost_i` (patch steps at 1/K: the
  theoretical λ/K + 1 - λ); relative_train_flops uses the FLOP model of
  jaxtok.eval.flops; wall_clock_ratio uses the measured time per step of each
  phase (compilation, evaluation and checkpointing excluded).
  """
  total = sum(p.steps for p in phases)
  last = phases[-1]
  rows, flops_total, nbytes_total = [], 0.0, 0.0
  for p, s in zip(phases, stats):
    step_time = s["time"] / s["timed_steps"] if s["timed_steps"] else math.nan
    train_flops = p.flops.train * s["bytes"]
    flops_total += train_flops
    nbytes_total += s["bytes"]
    rows.append(
      dict(
        name=p.name,
        steps=p.steps,
        cost_per_step=p.cost,
        train_flops_per_byte=p.flops.train,
        train_flops=train_flops,
        bytes=s["bytes"],
        tokens=s["tokens"],
        step_time_s=step_time,
        bytes_per_s=s["bytes"] / s["time"] if s["time"] else math.nan,
      )
    )
  last_step_time = rows[-1]["step_time_s"]
  return {
    "phases": rows,
    "relative_cost": sum(p.cost * p.steps for p in phases) / total,
    "relative_train_flops": flops_total / max(last.flops.train * nbytes_total, 1e-30),
    "wall_clock_ratio": sum(r["step_time_s"] * r["steps"] for r in rows) / (last_step_time * total),
  }
