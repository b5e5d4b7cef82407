"""BLT generation speed: KV-cached vs re-running the prefix per byte, at two context lengths.

Greedy decoding of --new bytes after a prompt of 256 and of 1024 bytes of stdlib
text; the prompt is fed before timing. Uncached decoding re-patches and re-runs
the entropy model and the whole BLT on the prefix for every byte (the
reference implementation's way), padded to the final length (one compilation).
Without --workdir the BLT and entropy model have the sizes of
configs/blt_entropy.py and configs/entropy_model.py with random weights, and
the threshold is the 75th percentile of the prompt's entropies (~4 bytes/patch).

  PYTHONPATH=. python bench/generation.py [--workdir workdirs/blt_entropy] [--new 32]
"""

from __future__ import annotations

import argparse
import sysconfig
import time

import jax
import numpy as np
from flax import nnx

from configs import blt_entropy, entropy_model
from jaxtok import generate
from jaxtok.data import codec
from jaxtok.models.blt import BLT, BLTConfig
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import PatchingConfig


def random_models(prompt_ids):
  c = blt_entropy.get_config()
  em_cfg = TransformerConfig.from_dict(entropy_model.get_config().model)
  em = EntropyModel(Transformer(em_cfg, rngs=nnx.Rngs(1)), seq_len=512)
  theta = float(np.percentile(em.next_entropies(prompt_ids[None]), 75))
  pcfg = PatchingConfig.from_dict({**c.patching.to_dict(), "threshold": theta})
  cfg = BLTConfig.from_dict(c.model, max_patches=512, lookahead=pcfg.lookahead)
  return BLT(cfg, rngs=nnx.Rngs(0)), pcfg, em


def timed(fn, n):
  t0 = time.perf_counter()
  out = fn(n)
  return out, time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default=None, help="a trained BLT (default: random weights)")
  parser.add_argument("--contexts", default="256,1024")
  parser.add_argument("--new", type=int, default=32, help="bytes generated per measurement")
  args = parser.parse_args()

  text = open(f"{sysconfig.get_paths()['stdlib']}/argparse.py", "rb").read()
  contexts = [int(x) for x in args.contexts.split(",")]
  probe = codec.encode(text[: max(contexts)], add_eos=False)
  if args.workdir:
    _, model, pcfg, em = generate.load_for_generation(args.workdir)
  else:
    model, pcfg, em = random_models(probe)
  print(f"{jax.devices()[0].platform}; greedy, {args.new} new bytes per measurement")
  rates = {}
  for ctx in contexts:
    ids = [int(b) for b in codec.encode(text[: ctx - 1], add_eos=False)]  # ctx ids with BOS
    max_len = ctx + args.new + 3
    gen = generate.BLTGenerator(model, pcfg, em, max_len=max_len)
    hw = generate._HashWindow(model.cfg)
    st = gen.init()
    key = jax.random.PRNGKey(0)
    nxt = None
    for b in ids:
      st, nxt, _ = gen.step(st, b, hw.push(b), key)
    jax.block_until_ready(nxt)
    state = {"st": st, "nxt": nxt}

    def cached(n):
      out = []
      for _ in range(n):
        b = int(state["nxt"])
        out.append(b)
        state["st"], state["nxt"], _ = gen.step(state["st"], b, hw.push(b), key)
      jax.block_until_ready(state["nxt"])
      return out

    warm = cached(2)  # the step is compiled already; warm up the first bytes after the prompt
    out_c, dt_c = timed(cached, args.new)

    ref = generate.UncachedBLT(model, pcfg, em, pad_to=max_len + 3)
    prefix = ids + warm
    ref.next_logits(np.asarray(prefix, np.int32)).block_until_ready()  # compile

    def uncached(n):
      out = []
      for _ in range(n):
        logits = ref.next_logits(np.asarray(prefix, np.int32))
        b = int(generate.sample(logits, key, 0.0, 1.0))
        out.append(b)
        prefix.append(b)
      return out

    out_u, dt_u = timed(uncached, args.new)
    same = out_u == out_c[: len(out_u)]
    rates[ctx] = (args.new / dt_c, args.new / dt_u)
    print(
      f"context {ctx:5d}: cached {rates[ctx][0]:8.1f} bytes/s, uncached {rates[ctx][1]:7.2f} "
      f"bytes/s, speed-up {rates[ctx][0] / rates[ctx][1]:6.1f}x (same bytes: {same})"
    )
  if len(contexts) > 1:
    a, b = contexts[0], contexts[-1]
    print(
      f"speed-up grows {rates[b][0] / rates[b][1] / (rates[a][0] / rates[a][1]):.2f}x "
      f"from {a} to {b} bytes of context"
    )


if __name__ == "__main__":
  main()
