"""Pallas kernels vs their jnp twins vs jax.nn.dot_product_attention, at BLT shapes.

  python bench/kernels.py --small          # CPU (kernels interpreted): minutes
  python bench/kernels.py                  # accelerators: bytes 4k/8k/16k

All timings of one table come from one run, interleaved round by round so that
machine noise hits every implementation alike; ratios > 1 mean the Pallas
kernel is faster. On CPU the kernels run in Pallas' interpreter, so the table
shows the cost of correctness checking there, not kernel speed.

Attention cases (BLT's three attention patterns over a row of T bytes in
packed documents; patch lengths drawn i.i.d. geometric with mean --patch_size,
4.5 bytes being the average of BLT's entropy patching in the paper):
  bytes      local-model self-attention: causal, documents, sliding window 512;
  enc-cross  encoder patch queries (k=2 per patch) over the bytes of their patch;
  dec-cross  decoder bytes over the latent of their preceding patch.
Columns: time per call (fwd, fwd+bwd), the XLA twin's and dot_product_attention's
time relative to the kernel, the kernel's achieved FLOP/s counting only visible
(query, key) pairs (fwd 4·H flops per pair and head, fwd+bwd 3x that), and the
fraction of key blocks the kernel visited. `dot_product_attention` gets the
dense boolean mask precomputed (it has no segment-id form); the XLA twin is
`jaxtok.nn.attention.attention(impl="xla")`.

A scaling table then times the kernel's forward over one row at growing windows:
time should follow the visited blocks. Last, segment pooling (max, mean) vs
`jax.ops.segment_max/sum`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxtok.nn import pooling  # noqa: E402
from jaxtok.nn.attention import Mask, attention  # noqa: E402
from pallas_kernels import flash_attention as fa  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Preset:
  batch: int
  lengths: tuple[int, ...]  # bytes per row
  heads: int
  head_dim: int
  pool_dim: int
  window: int = 512
  queries_per_patch: int = 2


PRESETS = {
  "small": Preset(batch=1, lengths=(2048,), heads=2, head_dim=64, pool_dim=256),
  "full": Preset(batch=2, lengths=(4096, 8192, 16384), heads=8, head_dim=128, pool_dim=1024),
}


def layout(rng, batch: int, t: int, patch_size: float):
  """Documents and patches of a packed row: segment ids, patch ids per byte
  (-1 on padding), and the patch count P."""
  seg = np.zeros((batch, t), np.int32)
  pid = np.full((batch, t), -1, np.int32)
  for b in range(batch):
    pos, doc, patch = 0, 1, 0
    while pos < t:
      doc_len = min(t - pos, int(rng.integers(t // 4, t)))
      lengths = rng.geometric(1 / patch_size, size=doc_len)
      ids = np.repeat(np.arange(patch, patch + doc_len), lengths)[:doc_len]
      seg[b, pos : pos + doc_len] = doc
      pid[b, pos : pos + doc_len] = ids
      pos, doc, patch = pos + doc_len, doc + 1, ids[-1] + 1
  return seg, pid, int(pid.max()) + 1


def attention_cases(rng, preset: Preset, t: int, patch_size: float):
  """(name, q length, kv length, Mask) for BLT's attention patterns."""
  seg, pid, p = layout(rng, preset.batch, t, patch_size)
  k = preset.queries_per_patch
  patch_q = np.repeat(np.arange(1, p + 1), k)[None].repeat(preset.batch, 0)  # P*k queries
  byte_patch = np.where(pid >= 0, pid + 1, 0)
  # Decoder: byte t reads the latent of the patch before its own (BLT's decoder
  # alignment; the first patch of a row reads none).
  dec = np.where(pid >= 1, pid, 0)
  i32 = lambda x: jnp.asarray(x, jnp.int32)
  return [
    ("bytes", t, t, Mask.self_attention(i32(seg), window=preset.window)),
    (
      "enc-cross",
      p * k,
      t,
      Mask(q_segment_ids=i32(patch_q), kv_segment_ids=i32(byte_patch), causal=False),
    ),
    (
      "dec-cross",
      t,
      p * k,
      Mask(q_segment_ids=i32(dec), kv_segment_ids=i32(patch_q), causal=False),
    ),
  ], (pid, p)


def timed_rounds(fns: dict, repeats: int) -> dict[str, float]:
  """Median seconds per call of each fn, measured in interleaved rounds."""
  for fn in fns.values():
    jax.block_until_ready(fn())  # compile
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(ts) for name, ts in times.items()}


def fwd_and_grad(f, *args):
  """Jitted forward, and jitted forward+backward of a random projection of it."""
  fwd = jax.jit(f)
  ct = jax.random.normal(jax.random.key(1), jax.eval_shape(f, *args).shape, jnp.float32)
  grad = jax.jit(jax.grad(lambda *a: jnp.vdot(f(*a).astype(jnp.float32), ct), argnums=(0, 1, 2)))
  return (lambda: fwd(*args)), (lambda: grad(*args))


def bench_attention(preset: Preset, args, dtype, rng) -> list[dict]:
  rows = []
  n, h, bsz = preset.heads, preset.head_dim, preset.batch
  for t in preset.lengths:
    cases, _ = attention_cases(rng, preset, t, args.patch_size)
    for name, tq, tk, mask in cases:
      key = jax.random.key(t + tq)
      q, k, v = (
        jax.random.normal(kk, (bsz, length, n, h), dtype)
        for kk, length in zip(jax.random.split(key, 3), (tq, tk, tk))
      )
      dense = mask.dense(bsz, tq, tk)
      pairs = int(jnp.sum(dense)) * n
      _, visits = jax.jit(fa.attention_with_stats)(q, k, v, mask)
      blocks = -(-tq // fa.BLOCK_Q) * -(-tk // fa.BLOCK_K) * bsz * n
      impls = {
        "pallas": lambda q, k, v, mask=mask: fa.attention(q, k, v, mask),
        "xla": lambda q, k, v, mask=mask: attention(q, k, v, mask, impl="xla"),
        "dpa": lambda q, k, v, dense=dense: jax.nn.dot_product_attention(
          q, k, v, mask=dense[:, None]
        ),
      }
      fns = {}
      for impl, f in impls.items():
        fwd, grad = fwd_and_grad(f, q, k, v)
        fns[f"{impl}/fwd"], fns[f"{impl}/bwd"] = fwd, grad
      sec = timed_rounds(fns, args.repeats)
      flops = 4 * h * pairs
      rows.append(
        dict(
          T=t,
          case=name,
          shape=f"{bsz}x{tq}x{n}x{h} / kv {tk}",
          fwd_ms=1e3 * sec["pallas/fwd"],
          fwd_bwd_ms=1e3 * sec["pallas/bwd"],
          xla_fwd=sec["xla/fwd"] / sec["pallas/fwd"],
          xla_fwd_bwd=sec["xla/bwd"] / sec["pallas/bwd"],
          dpa_fwd=sec["dpa/fwd"] / sec["pallas/fwd"],
          dpa_fwd_bwd=sec["dpa/bwd"] / sec["pallas/bwd"],
          gflops_fwd=flops / sec["pallas/fwd"] / 1e9,
          gflops_fwd_bwd=3 * flops / sec["pallas/bwd"] / 1e9,
          visited_blocks=int(visits.sum()) / blocks,
        )
      )
      print(f"  measured {name} at T={t}", file=sys.stderr, flush=True)
  return rows


def bench_scaling(preset: Preset, args, dtype) -> list[dict]:
  """Kernel forward over one row of the longest length at growing windows."""
  t = preset.lengths[-1]
  q = jax.random.normal(jax.random.key(0), (1, t, preset.heads, preset.head_dim), dtype)
  stats = jax.jit(fa.attention_with_stats)
  fns, visits = {}, {}
  for w in (128, 256, 512, 1024, None):
    mask = Mask(window=w)
    visits[w] = int(stats(q, q, q, mask)[1].sum())
    fns[w] = jax.jit(lambda q, mask=mask: fa.attention(q, q, q, mask)).lower(q).compile()
  sec = timed_rounds({w: (lambda f=f: f(q)) for w, f in fns.items()}, args.repeats)
  return [
    dict(
      window="causal" if w is None else w,
      visited_blocks=visits[w],
      fwd_ms=1e3 * sec[w],
      us_per_block=1e6 * sec[w] / visits[w],
    )
    for w in fns
  ]


def bench_pooling(preset: Preset, args, dtype, rng) -> list[dict]:
  rows = []
  for t in preset.lengths:
    _, (pid, p) = attention_cases(rng, preset, t, args.patch_size)
    x = jax.random.normal(jax.random.key(2), (preset.batch, t, preset.pool_dim), dtype)
    ids = jnp.asarray(pid)
    fns = {}
    for kind in ("max", "mean"):
      for impl in ("pallas", "xla"):
        f = jax.jit(
          lambda x, kind=kind, impl=impl: pooling.segment_pool(x, ids, p, kind, impl=impl)
        )
        g = jax.jit(jax.grad(lambda x, f=f: f(x).astype(jnp.float32).sum()))
        fns[f"{kind}/{impl}/fwd"], fns[f"{kind}/{impl}/bwd"] = (
          (lambda f=f: f(x)),
          (lambda g=g: g(x)),
        )
    sec = timed_rounds(fns, args.repeats)
    for kind in ("max", "mean"):
      rows.append(
        dict(
          T=t,
          kind=kind,
          shape=f"{preset.batch}x{t}x{preset.pool_dim} -> {p} patches",
          fwd_ms=1e3 * sec[f"{kind}/pallas/fwd"],
          fwd_bwd_ms=1e3 * sec[f"{kind}/pallas/bwd"],
          xla_fwd=sec[f"{kind}/xla/fwd"] / sec[f"{kind}/pallas/fwd"],
          xla_fwd_bwd=sec[f"{kind}/xla/bwd"] / sec[f"{kind}/pallas/bwd"],
        )
      )
  return rows


def table(rows: list[dict]) -> str:
  cols = list(rows[0])
  fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--small", action="store_true", help="CPU-sized preset")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--patch_size", type=float, default=4.5, help="mean bytes per patch")
  parser.add_argument("--json", default="", help="also write the tables to this JSON file")
  args = parser.parse_args()
  preset = PRESETS["small" if args.small else "full"]
  device = jax.devices()[0]
  on_cpu = device.platform == "cpu"
  dtype = jnp.float32 if on_cpu else jnp.bfloat16
  rng = np.random.default_rng(0)
  print(
    f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, {dtype.__name__}"
  )
  if on_cpu:
    print(
      "CPU: the Pallas kernels run in interpret mode, so these ratios are the cost of "
      "checking them here, not kernel speed. No GPU was lent in the session that wrote this."
    )
  tables = {
    "attention": bench_attention(preset, args, dtype, rng),
    "scaling": bench_scaling(preset, args, dtype),
    "pooling": bench_pooling(preset, args, dtype, rng),
  }
  print("\n## Attention (ratios: other / pallas time; > 1 = kernel faster)\n")
  print(table(tables["attention"]))
  print("\n## Kernel forward vs window (one row): time follows the visited blocks\n")
  print(table(tables["scaling"]))
  print("\n## Segment pooling (ratios: xla / pallas time)\n")
  print(table(tables["pooling"]))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({**tables, "device": device.device_kind, "load_average": os.getloadavg()}, f)


if __name__ == "__main__":
  main()
