r"""Token-level vs patch-level training (Shao et al., 2024) at equal training tokens.

  python -m experiments.patch_level_compare --config=configs/patch_level_compare_small.py \
      --workdir=workdirs/patch_small

Writes <workdir>/patch_level_compare.{json,md}; one trainer workdir per run
inside it. Re-running reuses finished runs and resumes interrupted ones.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxtok.compare import patch_level as patch_level_compare

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/patch_level_compare_small.py", "Path to a configs/*.py file."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Runs and reports.", required=True)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  rows = patch_level_compare.run(_CONFIG.value, _WORKDIR.value)
  print(patch_level_compare.markdown(rows, _CONFIG.value))
  print(f"written: {_WORKDIR.value}/patch_level_compare.json and .md")


if __name__ == "__main__":
  app.run(main)
