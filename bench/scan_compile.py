r"""Compile cost of a scanned layer stack vs its unrolled twin, by depth.

  python bench/scan_compile.py [--layers=4,16,32] [--d_model=128] [--seq=128] [--batch=2]

For a byte Transformer of each depth, builds forward + backward of the loss
(`jax.jit(jax.value_and_grad(loss)).lower(...).compile()`) with the layers
scanned (`scan_layers=True`, one `lax.scan` over stacked parameters) and
unrolled (`scan_layers=False`, a Python loop over the same parameters), and
prints the time to trace + lower, the time to compile, and the size of the
optimised HLO (`compiled.as_text()`, lines). Both variants of a depth are
measured back to back in one run; the load average is printed before and after,
since compile times on a shared machine move with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from jaxtok.models.losses import token_ce_sums  # noqa: E402
from jaxtok.models.transformer import Transformer, TransformerConfig  # noqa: E402


def measure(n_layers: int, scan: bool, *, d_model: int, seq: int, batch: int) -> dict:
  """{"lower_s", "compile_s", "hlo_lines"} of forward + backward of one model."""
  cfg = TransformerConfig(d_model=d_model, n_layers=n_layers, scan_layers=scan)
  model = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(model, nnx.Param)
  tokens = jax.ShapeDtypeStruct((batch, seq + 1), jnp.int32)

  def loss(params, tokens_BxT):
    logits = nnx.merge(graphdef, params)(tokens_BxT[:, :-1])
    return token_ce_sums(logits, tokens_BxT[:, 1:])["loss_sum"]

  step = jax.jit(jax.value_and_grad(loss))
  t0 = time.perf_counter()
  lowered = step.lower(params, tokens)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  return {"lower_s": t1 - t0, "compile_s": t2 - t1, "hlo_lines": compiled.as_text().count("\n")}


def load() -> str:
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--layers", default="4,16,32", help="comma-separated depths")
  p.add_argument("--d_model", type=int, default=128)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--batch", type=int, default=2)
  args = p.parse_args()
  depths = [int(n) for n in args.layers.split(",")]
  shape = dict(d_model=args.d_model, seq=args.seq, batch=args.batch)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {shape}; forward + backward")
  print(f"load average (1, 5, 15 min) before: {load()}")
  header = f"{'layers':>6} {'stack':>9} {'lower s':>8} {'compile s':>10} {'HLO lines':>10}"
  print(header)
  print("-" * len(header))
  rows = []
  for n in depths:
    for scan in (True, False):
      r = measure(n, scan, **shape)
      rows.append((n, scan, r))
      name = "scanned" if scan else "unrolled"
      print(
        f"{n:>6} {name:>9} {r['lower_s']:>8.2f} {r['compile_s']:>10.2f} {r['hlo_lines']:>10,}",
        flush=True,
      )
  print(f"load average (1, 5, 15 min) after: {load()}")
  print("unrolled / scanned:")
  by = {(n, scan): r for n, scan, r in rows}
  for n in depths:
    s, u = by[(n, True)], by[(n, False)]
    print(
      f"{n:>6} layers: compile x{u['compile_s'] / s['compile_s']:.1f}, "
      f"lower x{u['lower_s'] / s['lower_s']:.1f}, HLO lines x{u['hlo_lines'] / s['hlo_lines']:.1f}"
    )


if __name__ == "__main__":
  main()
