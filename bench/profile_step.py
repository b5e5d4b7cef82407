"""Where a train step's time goes on this device: per-op time from a jax.profiler trace, by kind.

  PYTHONPATH=. python bench/profile_step.py [--config configs/blt_static.py] [--steps 3]
      [--set model.attention_impl=xla ...] [--top 15] [--trace_dir DIR]

Traces `--steps` jitted train steps (fixed batch, after compilation), reads the per-op
events of the Perfetto trace, maps each op to its HLO instruction in the compiled
program and sums the time by kind:
  matmul        dots and the fusions around them (XNNPACK/YNNPACK, oneDNN, Eigen)
  exp           fusions with an exponential: attention's softmax (masks fused in), SiLU,
                the loss's softmax, forward and backward
  elementwise   the other loop/reduce fusions (norms, RoPE, SwiGLU, residuals, AdamW)
  gather        gathers and fusions around them (embeddings, pooling backward)
  scatter       scatters (embedding gradients, segment ops, the patch layout)
  copy          copies, transposes, concatenates, dynamic (update) slices of scans
  other         everything else (control flow, sorts, ...)
Control-flow ops (while/call/conditional) are containers: only their bodies' ops count.
`step - ops` is what no op accounts for: launch overhead, allocation and waiting (negative
when independent ops ran at the same time on different cores).
Minor page faults per step (getrusage) measure the allocation of per-step temporaries.
The optimizer (clipping + AdamW over every parameter) is also timed alone, jitted.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import statistics
import tempfile
import time

import jax

from bench.blt_throughput import Arm, load_config
from jaxtok.train.optimizer import make_optimizer

KINDS = ("matmul", "exp", "elementwise", "gather", "scatter", "copy", "other")
_CONTAINERS = ("while", "call", "conditional")
_COPY = (
  "copy",
  "transpose",
  "concatenate",
  "dynamic-slice",
  "dynamic-update-slice",
  "slice",
  "pad",
)


def hlo_kinds(hlo: str) -> dict[str, str]:
  """{instruction name: kind} of every instruction of an HLO module's text."""
  comps: dict[str, list[str]] = {}
  current = None
  for line in hlo.splitlines():
    m = re.match(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s*(?:\(.*\))?.*\{\s*$", line)
    if m and "=" not in line.split("{")[0]:
      current = m.group(1)
      comps[current] = []
    elif current is not None and "=" in line:
      comps[current].append(line)

  def ops_of(line: str) -> tuple[str, str | None]:
    m = re.search(r"=\s*[^=]*?\s([\w\-]+)\(", line)
    op = m.group(1) if m else "?"
    called = re.search(r"calls=%?([\w.\-]+)", line)
    return op, called.group(1) if called else None

  def kind_of_comp(name: str, seen=()) -> set[str]:
    ops = set()
    for line in comps.get(name, []):
      op, called = ops_of(line)
      ops.add(op)
      if called and called not in seen:
        ops |= kind_of_comp(called, (*seen, called))
    return ops

  def classify(name: str, op: str, called: str | None, line: str) -> str:
    ops = {op} | (kind_of_comp(called) if called else set())
    if op == "custom-call" or "dot" in ops or "convolution" in ops or "__xnn" in line:
      return "matmul"
    if "scatter" in ops:
      return "scatter"
    if "gather" in ops:
      return "gather"
    if op in _CONTAINERS:
      return "container"
    # A scan's dynamic slice fuses its index arithmetic (scalar constants, compares,
    # selects): still a copy. XLA names a fusion after the ops it fuses, so the name tells.
    sliced = name.startswith(("dynamic-slice", "slice")) and not ops & {"reduce", "exponential"}
    if (
      op in _COPY
      or sliced
      or (op == "fusion" and ops <= {*_COPY, "parameter", "bitcast", "fusion"})
    ):
      return "copy"
    if "exponential" in ops:
      return "exp"
    if op in ("fusion", "reduce", "add", "multiply", "select", "compare"):
      return "elementwise"
    return "other"

  out = {}
  for lines in comps.values():
    for line in lines:
      m = re.match(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=", line)
      if m:
        op, called = ops_of(line)
        out[m.group(1)] = classify(m.group(1), op, called, line)
  return out


def op_times(trace_dir: str) -> dict[str, float]:
  """{op name: total microseconds} of the complete events of the newest Perfetto trace."""
  path = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True))
  with gzip.open(path[-1]) as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  total: dict[str, float] = collections.defaultdict(float)
  for e in events:
    if e.get("ph") == "X":
      total[e["name"]] += e.get("dur", 0.0)
  return total


def ms_by_kind(
  trace_dir: str, kinds: dict[str, str], steps: int
) -> tuple[dict[str, float], dict[str, tuple[str, float]]]:
  """A trace of `steps` steps: ({kind: ms per step}, {op: (kind, ms per step)}), containers
  (whose time is their body's) and ops outside the HLO module left out."""
  by_kind = dict.fromkeys(KINDS, 0.0)
  by_op = {}
  for name, us in op_times(trace_dir).items():
    k = kinds.get(name)
    if k is None or k == "container":
      continue
    by_kind[k] += us / steps / 1e3
    by_op[name] = (k, us / steps / 1e3)
  return by_kind, by_op


def profile(arm: Arm, steps: int, trace_dir: str) -> dict:
  batch = arm.batches[0]
  compiled = arm.step.lower(arm.state, batch).compile()
  kinds = hlo_kinds(compiled.as_text())
  arm._run(1)
  faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  t0 = time.perf_counter()
  times = [arm._run(1) for _ in range(steps)]
  wall = time.perf_counter() - t0
  faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
  jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
  arm._run(steps)
  jax.profiler.stop_trace()
  by_kind, by_op = ms_by_kind(trace_dir, kinds, steps)
  return dict(
    optimizer_ms=optimizer_ms(arm),
    step_ms=statistics.median(times) * 1e3,
    wall_ms=wall / steps * 1e3,
    minor_faults=faults,
    by_kind=by_kind,
    top=sorted(by_op.items(), key=lambda kv: -kv[1][1]),
  )


def optimizer_ms(arm: Arm, n: int = 5) -> float:
  """Median time of the arm's optimizer update alone (the bench's AdamW, grads = params)."""
  tx, _ = make_optimizer(lr=1e-3, warmup_steps=1, total_steps=1000)
  params = arm.state.params
  update = jax.jit(lambda g, s, p: tx.update(g, s, p), donate_argnums=1)
  opt_state = tx.init(params)
  jax.block_until_ready(update(params, opt_state, params))
  times = []
  for _ in range(n):
    opt_state = tx.init(params)
    t0 = time.perf_counter()
    jax.block_until_ready(update(params, opt_state, params))
    times.append(time.perf_counter() - t0)
  return statistics.median(times) * 1e3


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/blt_static.py")
  parser.add_argument("--set", action="append", default=[], help="config override a.b=v")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--top", type=int, default=15)
  parser.add_argument("--trace_dir", default="")
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  print(f"load average before: {os.getloadavg()}")
  arm = Arm(os.path.basename(args.config), load_config(args.config, args.set), args.steps)
  r = profile(arm, args.steps, args.trace_dir or tempfile.mkdtemp(prefix="jaxtok-trace-"))
  ops = sum(r["by_kind"].values())
  print(f"{args.config} {' '.join(args.set)}: step {r['step_ms']:.1f} ms (untraced median)")
  for k, ms in r["by_kind"].items():
    print(f"  {k:12s} {ms:8.1f} ms  {ms / ops:6.1%} of op time")
  print(f"  {'ops total':12s} {ops:8.1f} ms; step - ops = {r['step_ms'] - ops:.1f} ms")
  print(
    f"  minor page faults per step: {r['minor_faults']:.0f} (~{r['minor_faults'] / 256:.0f} MB)"
  )
  print(f"  optimizer alone (clip + AdamW, jitted): {r['optimizer_ms']:.1f} ms")
  print("  top ops:")
  for name, (k, ms) in r["top"][: args.top]:
    print(f"    {ms:8.2f} ms  {k:11s} {name}")
  print(f"load average after: {os.getloadavg()}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({k: v for k, v in r.items() if k != "top"}, f, indent=2)


if __name__ == "__main__":
  main()
