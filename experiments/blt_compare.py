r"""Entropy / space / static BLT vs byte and BPE transformers at matched training FLOPs.

  python -m experiments.blt_compare --config=configs/blt_compare.py:small --workdir=workdirs/cmp

Writes compare.json and compare.md (the table) into --workdir; rerunning resumes.
"""

from absl import flags, logging

from experiments import cli
from jaxtok.compare import blt as blt_compare

_CONFIG = cli.define_config("blt_compare:small")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where every arm trains.", required=True)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  blt_compare.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
