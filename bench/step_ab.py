"""A/B of train-step variants in one process: interleaved rounds, medians, load average.

  PYTHONPATH=. python bench/step_ab.py --config configs/blt_static.py \
      --arm base: --arm gather:model.cross_attn_impl=dense --rounds 3 --steps 3
  ... --arm 'noynn:@xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT'

Each arm reports its median wall time and CPU seconds per step (all threads; steadier
than wall time on a shared machine) with the speed-up over the first arm.
An arm is NAME:SETTINGS with SETTINGS a comma-separated list of config overrides `a.b=v`
and XLA compiler options `@option=value` (compiled for that arm only, so arms with
different XLA options share the process and the machine's load). The first arm is the
baseline every ratio is against; every arm trains from the same initial state and batches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

from bench.blt_throughput import Arm, load_config


def parse_arm(spec: str) -> tuple[str, list[str], dict[str, str]]:
  name, _, settings = spec.partition(":")
  sets, opts = [], {}
  for s in filter(None, settings.split(",")):
    if s.startswith("@"):
      key, value = s[1:].split("=", 1)
      opts[key] = {"true": True, "false": False}.get(value.lower(), value)
    else:
      sets.append(s)
  return name, sets, opts


class CompiledArm:
  def __init__(self, spec: str, config_path: str, steps: int):
    self.name, sets, opts = parse_arm(spec)
    self.arm = Arm(self.name, load_config(config_path, sets), steps)
    a = self.arm
    a.step = a.step.lower(a.state, a.batches[0]).compile(opts or None)
    self.times: list[float] = []
    self.cpu: list[float] = []  # CPU seconds of the process per step: steadier under load

  def round(self, steps: int) -> None:
    c0 = time.process_time()
    self.times.append(self.arm._run(steps))
    self.cpu.append((time.process_time() - c0) / steps)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/blt_static.py")
  parser.add_argument("--arm", action="append", required=True, help="NAME:a.b=v,@xla_opt=v")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  print(f"load average before: {os.getloadavg()}")
  t0 = time.perf_counter()
  arms = [CompiledArm(s, args.config, args.steps) for s in args.arm]
  for _ in range(args.rounds):
    for a in arms:
      a.round(args.steps)
  base, base_cpu = statistics.median(arms[0].times), statistics.median(arms[0].cpu)
  print(f"{args.config}: {args.rounds} rounds x {args.steps} steps, {jax.devices()[0].platform}")
  print("  (wall: median step time; cpu: CPU seconds per step, all threads, steadier under load)")
  for a in arms:
    dt, cpu = statistics.median(a.times), statistics.median(a.cpu)
    print(
      f"  {a.name:24s} wall {dt * 1e3:7.1f} ms ({base / dt:4.2f}x)  cpu {cpu * 1e3:7.1f} ms "
      f"({base_cpu / cpu:4.2f}x)  {a.arm.bytes_per_step / dt:6.0f} bytes/s  rounds: "
      + " ".join(f"{t * 1e3:.0f}" for t in a.times)
    )
  print(f"load average after: {os.getloadavg()}  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
  main()
