"""Speed of a patch-mode train step against a token-mode step at equal tokens per step.

A token step trains on B rows of T tokens; a patch step on the same B·T tokens
laid out as B/K rows of K·T tokens (T patches each), so it does 1/K of the
work. Both are the trainer's jitted steps (AdamW, clipping) on real packed
stdlib batches, timed in alternating rounds in one process; the report gives
the median time per step, the measured speed-up next to the ideal K, and the
cost of a run with the first λ of the steps in patch mode: measured
λ·(patch/token) + 1 - λ next to the theoretical λ/K + 1 - λ.

  flock /tmp/jaxtok-cpu.lock python bench/patch_level_speed.py [--K 2 4] [--fraction 0.6667]
      [--d_model 128 --n_layers 4 --n_heads 4 --seq_len 256 --batch_size 16 --vocab_size 4096]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtok.data.corpora import load_corpus
from jaxtok.data.packing import PackedBatches
from jaxtok.models.losses import lm_loss
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.train.optimizer import make_optimizer
from jaxtok.train.patch_level import long_rows, patch_loss
from jaxtok.train.steps import TrainState, make_train_step


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--K", type=int, nargs="+", default=[2, 4])
  p.add_argument("--fraction", type=float, default=2 / 3)
  p.add_argument("--d_model", type=int, default=128)
  p.add_argument("--n_layers", type=int, default=4)
  p.add_argument("--n_heads", type=int, default=4)
  p.add_argument("--seq_len", type=int, default=256)
  p.add_argument("--batch_size", type=int, default=16)
  p.add_argument("--vocab_size", type=int, default=4096, help="ids are bytes; only the head grows")
  p.add_argument("--steps", type=int, default=5, help="steps per timed round")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--data_dir", default=None)
  a = p.parse_args()
  for k in a.K:
    if a.batch_size % k:
      raise SystemExit(f"--batch_size {a.batch_size} must be divisible by every --K (got {k})")

  cfg = TransformerConfig(
    vocab_size=a.vocab_size, d_model=a.d_model, n_layers=a.n_layers, n_heads=a.n_heads
  )
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
  tx, schedule = make_optimizer(lr=1e-3, warmup_steps=10, total_steps=10_000)
  corpus = load_corpus("stdlib", split="train", data_dir=a.data_dir)
  it = PackedBatches(corpus, batch_size=a.batch_size, seq_len=a.seq_len, seed=0)
  batches = [next(it) for _ in range(a.steps)]

  modes = {"token": (make_train_step(graphdef, tx, schedule, lm_loss), batches)}
  for k in a.K:
    step = make_train_step(graphdef, tx, schedule, lambda m, b, k=k: patch_loss(m, b, k))
    modes[f"patch K={k}"] = (step, [long_rows(b, k) for b in batches])

  def fresh_state():  # each mode its own copy: the step donates its state
    p = jax.tree.map(jnp.copy, params)
    return TrainState(jnp.zeros((), jnp.int32), p, tx.init(p))

  states = {name: fresh_state() for name in modes}

  def run(name):
    step, data = modes[name]
    state = states[name]
    start = time.perf_counter()
    for b in data:
      state, m = step(state, b)
    jax.block_until_ready(m["loss"])
    states[name] = state
    return (time.perf_counter() - start) / len(data)

  for name in modes:  # compile, and one warm round
    run(name)
    run(name)
  times = {name: [] for name in modes}
  for _ in range(a.rounds):
    for name in modes:
      times[name].append(run(name))

  tokens = a.batch_size * a.seq_len
  print(
    f"model d={a.d_model} L={a.n_layers} vocab={a.vocab_size}, {tokens} tokens/step "
    f"({a.batch_size} x {a.seq_len}); median of {a.rounds} rounds x {a.steps} steps; "
    f"{jax.devices()[0].platform}"
  )
  t_token = statistics.median(times["token"])
  lam = a.fraction
  print(
    f"{'mode':12s} {'ms/step':>9s} {'tokens/s':>10s} {'speed-up':>9s} {'ideal':>6s}"
    f" {'run cost':>9s} {'λ/K+1-λ':>8s}"
  )
  for name in modes:
    t = statistics.median(times[name])
    k = 1 if name == "token" else int(name.split("=")[1])
    ratio = t / t_token
    print(
      f"{name:12s} {1e3 * t:9.1f} {tokens / t:10.0f} {1 / ratio:9.2f} {k:6d}"
      f" {lam * ratio + 1 - lam:9.3f} {lam / k + 1 - lam:8.3f}"
    )
  spread = {n: (max(v) - min(v)) / statistics.median(v) for n, v in times.items()}
  print(
    "round-to-round spread (max-min)/median: "
    + ", ".join(f"{n} {100 * s:.0f}%" for n, s in spread.items())
  )


if __name__ == "__main__":
  main()
