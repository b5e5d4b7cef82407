r"""Token-level vs patch-level training (Shao et al., 2024) at equal training tokens.

  python -m experiments.patch_level_compare --config=configs/patch_level_compare_small.py \
      --workdir=workdirs/patch_small

Writes <workdir>/patch_level_compare.{json,md}; one trainer workdir per run
inside it. Re-running reuses finished runs and resumes interrupted ones.
"""

from absl import flags, logging

from experiments import cli
from jaxtok.compare import patch_level as patch_level_compare

_CONFIG = cli.define_config("patch_level_compare_small")
_WORKDIR = flags.DEFINE_string("workdir", None, "Runs and reports.", required=True)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  rows = patch_level_compare.run(_CONFIG.value, _WORKDIR.value)
  print(patch_level_compare.markdown(rows, _CONFIG.value))
  print(f"written: {_WORKDIR.value}/patch_level_compare.json and .md")


if __name__ == "__main__":
  cli.run(main)
