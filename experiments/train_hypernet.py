r"""Train a ZeTT hypernetwork for a frozen base LM.

  python -m experiments.train_hypernet --config=configs/zett_tiny.py --workdir=workdirs/zett_hyper

The base LM is config.base (a jaxtok workdir, trained first if it is empty, or a GGUF such
as SmolLM2). Re-running with the same --workdir resumes from its latest checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxtok.train import zett

_CONFIG = config_flags.DEFINE_config_file("config", "configs/zett_tiny.py", "configs/zett_*.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs, results.", required=True)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  results = zett.train(_CONFIG.value, _WORKDIR.value)
  if "stopped_by" in results:
    print(f"stopped at step {results['step']} ({results['stopped_by']}); rerun to resume")
    return
  print(zett.results_table(results))


if __name__ == "__main__":
  app.run(main)
