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

from jaxtok.models.flops import Flops
from jaxtok.train.steps import LossFn


@dataclasses.dataclass
class Phase:
  name: str  # metric prefix, "<name>/loss"
  steps: int  # optimizer steps
  loss_fn: LossFn
  flops: Flops  # forward FLOPs per byte of training data in this phase
  transform: Callable[[dict], dict] | None = None  # packed host batch -> this phase's batch
  cost: float = 1.0  # cost of a step relative to a step of the last phase (for the report)


def new_stats() -> dict[str, Any]:
  """Per-phase counters, kept in checkpoints so that a resumed run reports whole phases.

  `windows` holds [steps, seconds] of each timed stretch (between logs, evals,
  checkpoints): their median time per step shrugs off bursts of load from
  other processes on a shared machine, which the mean does not.
  """
  return dict(bytes=0.0, tokens=0.0, time=0.0, timed_steps=0.0, windows=[])


def median_step_time(windows: list[list[float]]) -> float:
  """Median seconds per step over timed windows, each weighted by its number of steps."""
  if not windows:
    return math.nan
  per_step = sorted((t / n, n) for n, t in windows)
  half, seen = sum(n for _, n in per_step) / 2, 0.0
  for t, n in per_step:
    seen += n
    if seen >= half:
      return t
  return per_step[-1][0]


def report(
  phases: list[Phase], stats: list[dict[str, float]], *, compare: bool = True
) -> dict[str, Any]:
  """Per-phase numbers and, with `compare` and several phases, the cost relative to
  running all the steps as the last phase does (patch-level training).

  step_time_s is measured (compilation, evaluation and checkpointing excluded),
  step_time_median_s is its robust twin (see new_stats), and train_flops comes
  from the FLOP model of jaxtok.models.flops.
  relative_cost counts a step of phase i at `cost_i` (patch steps at 1/K: the
  theoretical λ/K + 1 - λ); relative_train_flops is the same ratio in FLOPs;
  wall_clock_ratio is Σ step_time_i x steps_i / (step_time_last x all steps),
  wall_clock_ratio_median the same with median step times.
  """
  rows = []
  for p, s in zip(phases, stats):
    step_time = s["time"] / s["timed_steps"] if s["timed_steps"] else math.nan
    rows.append(
      dict(
        name=p.name,
        steps=p.steps,
        cost_per_step=p.cost,
        train_flops_per_byte=p.flops.train,
        train_flops=p.flops.train * s["bytes"],
        bytes=s["bytes"],
        tokens=s["tokens"],
        step_time_s=step_time,
        wall_s=step_time * p.steps,  # the phase's time without compilation
        step_time_median_s=median_step_time(s.get("windows", [])),
      )
    )
  out: dict[str, Any] = {"phases": rows}
  if compare and len(phases) > 1:
    total = sum(p.steps for p in phases)
    flops_as_last = phases[-1].flops.train * sum(s["bytes"] for s in stats)
    out.update(
      relative_cost=sum(p.cost * p.steps for p in phases) / total,
      relative_train_flops=sum(r["train_flops"] for r in rows) / max(flops_as_last, 1e-30),
      wall_clock_ratio=sum(r["wall_s"] for r in rows) / (rows[-1]["step_time_s"] * total),
      wall_clock_ratio_median=sum(r["step_time_median_s"] * r["steps"] for r in rows)
      / (rows[-1]["step_time_median_s"] * total),
    )
  return out
