r"""Compare embedding inits for unseen tokenizers: hypernetwork, FVT, FOCUS-style, lexical, random.

  python -m experiments.zett_compare --config=configs/zett_tiny.py --workdir=workdirs/zett_tiny

Trains what is missing (base LM, hypernetwork), then writes results.json and results.md.
"""

from absl import flags, logging

from experiments import cli
from jaxtok.compare import zett as zett_compare

_CONFIG = cli.define_config("zett_tiny")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Where results (and missing models) go.", required=True
)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  results = zett_compare.run(_CONFIG.value, _WORKDIR.value)
  print(zett_compare.markdown(results))


if __name__ == "__main__":
  cli.run(main)
