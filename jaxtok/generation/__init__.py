"""Generation from BLTs and transformer LMs: prefill, an on-device decode loop, batches.

* `api.generate` (also `jaxtok.generate`): text + per-byte log-probs from a
  workdir or a model, for one prompt or a batch, streamed if asked.
* `blt.BLTGenerator` / `lm.LMGenerator`: batched cached generation for one
  model; compiled steps are cached by shapes across calls.
* `loop`: the decode loop they share (sampling inside a `lax.while_loop`,
  N ids per call, EOS stop on device) and its host driver (streaming, stop strings).
* `uncached`: the reference BLT decode (re-patch, re-run the prefix per byte).
"""

from jaxtok.generation.api import generate, generate_text, generator_for, load_for_generation
from jaxtok.generation.blt import BLTGenerator
from jaxtok.generation.lm import LMGenerator
from jaxtok.generation.loop import Generation, Generator
from jaxtok.generation.sampling import SamplingConfig
from jaxtok.generation.uncached import UncachedBLT, generate_blt_uncached

__all__ = [
  "BLTGenerator",
  "Generation",
  "Generator",
  "LMGenerator",
  "SamplingConfig",
  "UncachedBLT",
  "generate",
  "generate_blt_uncached",
  "generate_text",
  "generator_for",
  "load_for_generation",
]
