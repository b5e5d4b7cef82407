r"""Score a corpus with BLT's entropy model once and store the entropies next to the data.

  python -m experiments.precompute_entropies --config=configs/blt_entropy.py
  python -m experiments.train --config=configs/blt_entropy.py \
      --config.patching.entropies=precomputed --workdir=workdirs/blt_entropy
"""

from absl import flags

from experiments import cli
from jaxtok.train import prepare

_CONFIG = cli.define_config("blt_entropy")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Recompute even if the files exist.")


def main(argv):
  del argv
  for split, path in prepare.precompute_entropies(
    _CONFIG.value, overwrite=_OVERWRITE.value
  ).items():
    print(f"{split}: {path}")


if __name__ == "__main__":
  cli.run(main)
