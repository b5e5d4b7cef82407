r"""Train a jaxtok model.

  python -m experiments.train --config=configs/entropy_model.py --workdir=/tmp/run \
      [--config.train.steps=2000 --config.data.name=files:~/corpus/*.txt]

--config is required: a path or a name (--config=tiny). Re-running with the same --workdir
resumes from its newest good checkpoint (README: Resume).
"""

from absl import flags, logging

from experiments import cli
from jaxtok.train import trainer

_CONFIG = cli.define_config("entropy_model")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Checkpoints, TensorBoard logs, results.", required=True
)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO; --verbosity=0 shows it
  results = trainer.train(_CONFIG.value, _WORKDIR.value)
  if "stopped_by" in results:
    print(
      f"stopped at step {results['step']} ({results['stopped_by']}); "
      f"checkpoint saved in {_WORKDIR.value}; rerun to resume"
    )
    return
  print(trainer.results_table(results))
  print(f"workdir: {_WORKDIR.value} (checkpoints/, tensorboard/, results.json)")


if __name__ == "__main__":
  cli.run(main)
