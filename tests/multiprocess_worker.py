"""One process of a multi-process job, for tests/test_multiprocess.py.

Started like an experiment binary (`experiments.cli.run`: --distributed, --coordinator_address,
--num_processes, --process_id start the runtime before any computation). Trains the runs of
--spec in order, in this one process; process 0 prints a RESULT line.
"""

import importlib
import json

import jax
from absl import flags

from experiments import cli
from jaxtok.train import trainer

_SPEC = flags.DEFINE_string(
  "spec", None, 'JSON: {"config": name, "overrides": {"a.b": v}, "runs": [[workdir, stop]]}'
)


def main(argv):
  del argv
  spec = json.loads(_SPEC.value)
  config = importlib.import_module(f"configs.{spec['config']}").get_config()
  for path, value in spec["overrides"].items():
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  results = [trainer.train(config, workdir, stop_after=stop) for workdir, stop in spec["runs"]]
  if jax.process_index() == 0:
    out = {"processes": jax.process_count(), "devices": jax.device_count(), "results": results}
    print("RESULT", json.dumps(out))


if __name__ == "__main__":
  cli.run(main)
