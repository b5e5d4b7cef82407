"""Training throughput (bytes/s) of a BLT vs its FLOP-matched byte transformer, one run.

Both train on the same packed stdlib rows; the BLT's host work (patching, hash
ids, the entropy model when it patches by entropy) is done before timing and
reported apart. Timed rounds alternate between the models so that machine load
hits both alike; the median step time of each is reported.

  PYTHONPATH=. python bench/blt_throughput.py [--blt configs/blt_static.py] \
      [--baseline configs/blt_baseline_bytes.py] [--steps 5 --rounds 3] [--no_torch] [--json F]
  PYTHONPATH=. python bench/blt_throughput.py --input_path [--steps 5 --rounds 3] [--set a.b=v]

--input_path times configs/blt_entropy.py's whole training step with entropy patches on the
fly, host input path included (packed rows -> patch starts, hash ids -> device -> step), in
two arms interleaved: one device round trip per batch (the entropy model and the patching
rule in one jitted call, as jaxtok does) and two (entropies fetched to the host, then patch
starts: the input path before issue 11). The entropy model has configs/entropy_model.py's
size, trained for 2 steps (speed does not depend on its weights); its threshold is
calibrated to 4 bytes/patch. JAX dispatches the step asynchronously, so the next batch's
host work may overlap it (in training a prefetch thread overlaps them).

With torch and transformers installed (the [test] extra) a third arm, interleaved with the
others, trains transformers' BltForCausalLM at the same config on the same rows and patch
lengths (eager PyTorch, sdpa, AdamW); without them it is skipped with a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time

# Run as a script, this folder is sys.path[0]: its kernels.py would shadow the `kernels`
# package transformers looks for. The repository root goes there instead (for `bench.*`).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p) != _HERE]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from bench import torch_reference as tr  # noqa: E402
from configs import entropy_model  # noqa: E402
from jaxtok import patching  # noqa: E402
from jaxtok.compare.blt import calibrate_threshold  # noqa: E402
from jaxtok.data import corpora, packing  # noqa: E402
from jaxtok.models.entropy_model import EntropyModel  # noqa: E402
from jaxtok.models.flops import count_params  # noqa: E402
from jaxtok.train import prepare  # noqa: E402
from jaxtok.train.blt_task import BLTBatches  # noqa: E402
from jaxtok.train.optimizer import make_optimizer  # noqa: E402
from jaxtok.train.steps import TrainState, make_train_step  # noqa: E402
from jaxtok.train.tasks import get_task  # noqa: E402
from jaxtok.train.trainer import train  # noqa: E402

ENTROPY_BLT = "configs/blt_entropy.py"  # --input_path's BLT (--set overrides apply to it)


def load_config(path: str, overrides: list[str]):
  spec = importlib.util.spec_from_file_location("cfg", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config()
  for o in overrides:
    key, value = o.split("=", 1)
    node = c
    *path_, last = key.split(".")
    for p in path_:
      node = node[p]
    node[last] = type(node[last])(value) if node[last] is not None else value
  return c


class Arm:
  def __init__(self, name, config, n_batches):
    self.name = name
    config = prepare.prepare(config, tempfile.mkdtemp(prefix="jaxtok-bench-"))
    self.task = get_task(config)
    model = self.task.build_model(nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tx, schedule = make_optimizer(lr=1e-3, warmup_steps=1, total_steps=1000)
    self.config, self.model_cfg = config, model.cfg
    self.state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
    self.step = make_train_step(graphdef, tx, schedule, self.task.loss_fn)
    self.params = count_params(params)
    it = packing.PackedBatches(
      corpora.corpus_for(config.data, "train"),
      batch_size=config.data.batch_size,
      seq_len=config.data.seq_len,
      seed=0,
      encode_fn=self.task.encode_fn,
    )
    t0 = time.perf_counter()
    raw = [next(it) for _ in range(n_batches)]
    self.raw_batches = raw
    t1 = time.perf_counter()
    tf = self.task.host_transform
    self.host_batches = [tf(b) if tf else b for b in raw]
    self.host_s = (time.perf_counter() - t1) / n_batches  # host transform per batch
    self.pack_s = (t1 - t0) / n_batches
    self.batches = [jax.device_put(b) for b in self.host_batches]
    # Bytes of text per step (token models: the bytes their targets stand for).
    bpt = self.task.extra.get("bytes_per_token", 1.0)
    self.bytes_per_step = config.data.batch_size * config.data.seq_len * bpt
    self.times: list[float] = []
    self._run(1)  # compile

  def _run(self, steps):
    t0 = time.perf_counter()
    for i in range(steps):
      self.state, m = self.step(self.state, self.batches[i % len(self.batches)])
    jax.block_until_ready(m["loss"])
    return (time.perf_counter() - t0) / steps

  def round(self, steps):
    self.times.append(self._run(steps))


def show_load(when: str, load):
  print(f"load average {when}: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  return load


def interleave(arms, rounds: int, steps: int):
  """Timed rounds alternating between the arms (machine load hits them alike); the load
  average right after."""
  for _ in range(rounds):
    for a in arms:
      a.round(steps)
  return os.getloadavg()


class InputPathArm:
  """The BLT step fed from packed rows through a host input path, timed together."""

  def __init__(self, name, arm: Arm, transform):
    self.name, self.arm, self.transform = name, arm, transform
    self.bytes_per_step = arm.bytes_per_step
    self.times: list[float] = []
    self.host_times: list[float] = []
    self.round(len(arm.raw_batches))  # compiles every batch's shapes (patch slots vary)
    self.times.clear(), self.host_times.clear()

  def round(self, steps):
    a, host = self.arm, 0.0
    t0 = time.perf_counter()
    for i in range(steps):
      h0 = time.perf_counter()
      batch = self.transform(a.raw_batches[i % len(a.raw_batches)])
      host += time.perf_counter() - h0
      a.state, m = a.step(a.state, jax.device_put(batch))
    jax.block_until_ready(m["loss"])
    self.times.append((time.perf_counter() - t0) / steps)
    self.host_times.append(host / steps)


def input_path(args) -> None:
  """BLT training bytes/s with the input path of one vs two device round trips per batch."""
  load_before = show_load("before", os.getloadavg())
  em_cfg = entropy_model.get_config()
  em_cfg.train.update(steps=2, eval_every=0, progress_bar=False)
  em_dir = tempfile.mkdtemp(prefix="jaxtok-bench-em-")
  train(em_cfg, em_dir)
  em = EntropyModel.load(em_dir)
  c = load_config(ENTROPY_BLT, args.set)
  c.patching.entropy_model_workdir = em_dir
  pcfg = patching.PatchingConfig.from_dict(c.patching)
  arm = Arm("BLT", c, args.steps)  # calibrated below; prepare measured its bytes/patch
  theta, bpp = calibrate_threshold(pcfg, em, arm.raw_batches, 4.0)
  tf = BLTBatches(dataclasses.replace(pcfg, threshold=theta), arm.model_cfg, entropy_model=em)

  def two_round_trips(batch):
    b = dict(batch)
    b["next_entropies"] = em.next_entropies(b["inputs"], b["segment_ids"], b["positions"])
    return tf(b)

  first = arm.raw_batches[0]
  same = np.array_equal(tf(first)["patch_starts"], two_round_trips(first)["patch_starts"])
  if not same:
    raise AssertionError("the two input paths give different patch starts")
  arms = [
    InputPathArm("one round trip", arm, tf),
    InputPathArm("two round trips", arm, two_round_trips),
  ]
  load_after = interleave(arms, args.rounds, args.steps)
  print(
    f"{jax.devices()[0].platform} x{jax.device_count()}; {args.rounds} rounds x {args.steps} "
    f"steps; entropy threshold {theta:.3f} ({bpp:.2f} bytes/patch); same patch starts: {same}"
  )
  rates = {}
  for a in arms:
    dt, host = statistics.median(a.times), statistics.median(a.host_times)
    rates[a.name] = a.bytes_per_step / dt
    print(
      f"{a.name:16s} {rates[a.name]:8.0f} bytes/s  step {dt * 1e3:7.1f} ms  "
      f"host input path {host * 1e3:6.1f} ms/batch"
    )
  ratio = rates["one round trip"] / rates["two round trips"]
  print(f"one / two round trips, training bytes/s: {ratio:.2f}x")
  show_load("after", load_after)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        dict(bytes_per_s=rates, ratio=ratio, load_average=load_after, load_before=load_before),
        f,
        indent=2,
      )


def torch_arm(blt: Arm):
  """transformers' BltForCausalLM at the BLT's config on the same rows and patch lengths."""
  model = tr.blt_reference(blt.model_cfg, patching.PatchingConfig.from_dict(blt.config.patching))
  batches = tr.torch_batches(blt.host_batches, with_patches=True)
  return tr.TorchArm("BltForCausalLM (torch)", model, batches, blt.bytes_per_step)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--blt", default="configs/blt_static.py")
  parser.add_argument("--baseline", default="configs/blt_baseline_bytes.py")
  parser.add_argument("--set", action="append", default=[], help="BLT config override a.b=v")
  parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
  parser.add_argument("--json", default="", help="also write the numbers to this JSON file")
  parser.add_argument(
    "--input_path", action="store_true", help="one vs two device round trips per batch"
  )
  args = parser.parse_args()
  if args.input_path:
    input_path(args)
    return

  load_before = show_load("before", os.getloadavg())
  blt_cfg = load_config(args.blt, args.set)
  base_cfg = load_config(args.baseline, [])
  arms = [Arm("BLT", blt_cfg, args.steps), Arm("byte transformer", base_cfg, args.steps)]
  why_not = "--no_torch" if args.no_torch else tr.available(need_transformers=True)
  if why_not is None:
    arms.append(torch_arm(arms[0]))
  else:
    print(f"PyTorch reference skipped: {why_not}")
  load_after = interleave(arms, args.rounds, args.steps)
  print(
    f"{jax.devices()[0].platform} x{jax.device_count()}; {args.rounds} rounds x {args.steps} steps"
    + (f"; torch {tr.threads()} threads" if why_not is None else "")
  )
  rates = {}
  for a in arms:
    dt = statistics.median(a.times)
    rates[a.name] = a.bytes_per_step / dt
    if isinstance(a, Arm):
      f = a.task.flops
      extra = ""
      if "bytes_per_patch" in a.task.extra:
        slots = a.host_batches[0].get("patch_lengths", np.zeros((0, a.model_cfg.max_patches)))
        extra = (
          f", {a.task.extra['bytes_per_patch']:.2f} bytes/patch ({a.task.extra['patching']}), "
          f"{slots.shape[1]} patch slots"
        )
      print(
        f"{a.name:22s} {rates[a.name]:9.0f} bytes/s  step {dt * 1e3:7.1f} ms  "
        f"{f.forward / 1e6:5.2f} MFLOPs/byte fwd  {f.train * rates[a.name] / 1e9:6.1f} GFLOP/s  "
        f"{a.params / 1e6:.2f}M params  host {a.host_s * 1e3:.0f} ms/batch{extra}"
      )
    else:
      patches = max(int(b["patch_lengths"].shape[1]) for b in a.batches)
      print(
        f"{a.name:22s} {rates[a.name]:9.0f} bytes/s  step {dt * 1e3:7.1f} ms  "
        f"{a.params / 1e6:.2f}M params  {patches} patches (the rows' own)"
      )
  ratio = rates["BLT"] / rates["byte transformer"]
  print(f"BLT / byte transformer training bytes/s: {ratio:.2f}x")
  out = dict(bytes_per_s=rates, ratio=ratio, load_average=load_after, load_before=load_before)
  if why_not is None:
    out["ratio_vs_torch"] = rates["BLT"] / rates[arms[2].name]
    print(f"jaxtok BLT / BltForCausalLM (torch) training bytes/s: {out['ratio_vs_torch']:.2f}x")
  show_load("after", load_after)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
