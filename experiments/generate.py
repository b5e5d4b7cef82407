r"""Sample bytes from a trained BLT (or byte transformer).

  python -m experiments.generate --workdir=workdirs/blt_entropy --prompt='def main(' \
      [--max_new_bytes=200 --temperature=0.8 --top_p=0.95 --uncached]

BLTs decode with KV caches for the entropy model, local encoder, latent
transformer and local decoder; --uncached re-runs the whole prefix per byte
(the reference implementation's way) and gives the same bytes, slower.
"""

import sys

from absl import flags, logging

from experiments import cli
from jaxtok import generate

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.", required=True)
_PROMPT = flags.DEFINE_string("prompt", "", "Text to continue (UTF-8).")
_N = flags.DEFINE_integer("max_new_bytes", 200, "Bytes to generate (stops early at EOS).")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_UNCACHED = flags.DEFINE_bool("uncached", False, "BLT: re-run the prefix per byte (reference).")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  kind, model, pcfg, em = generate.load_for_generation(_WORKDIR.value)
  prompt = _PROMPT.value.encode()
  kw = dict(temperature=_TEMPERATURE.value, top_p=_TOP_P.value, seed=_SEED.value)
  if kind == "transformer":
    out = generate.generate_transformer(model, prompt, _N.value, **kw)
  else:
    fn = generate.generate_blt_uncached if _UNCACHED.value else generate.generate_blt
    out = fn(model, pcfg, prompt, _N.value, entropy_model=em, **kw)
  sys.stdout.write(_PROMPT.value + out.decode("utf-8", errors="replace") + "\n")


if __name__ == "__main__":
  cli.run(main)
