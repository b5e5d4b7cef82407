"""What every experiment's command line shares.

* `--config` is required, and is a config name (`--config=tiny`, looked up in the
  installed `configs` package), or a path, from any directory, with an optional
  `:<preset>` (`--config=configs/blt_compare.py:small`).
* `--config.a.b=v` overrides are checked against the config before anything runs:
  an unknown field is reported by name, with the fields there are.
* Errors of the user's input or of the workdir end the program with their message
  (exit status 1) instead of a traceback.
* The distributed runtime (a job of several processes: TPU pod hosts, GPU nodes) is
  started from `--distributed` and its settings before `main` runs any computation.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys

from absl import app, flags
from ml_collections import config_flags

import configs
from jaxtok import distributed
from jaxtok.checkpoint import CheckpointError
from jaxtok.configlib import ConfigError, check_field, describe_fields, field_comments
from jaxtok.data.corpora import CorpusError
from jaxtok.models.blt import BLTConfig
from jaxtok.models.hypernet import HypernetConfig
from jaxtok.models.transformer import TransformerConfig
from jaxtok.patching.config import PatchingConfig
from jaxtok.paths import UnsupportedPathError
from jaxtok.train.lock import WorkdirBusyError
from jaxtok.train.trainer import TrainingDivergedError

CONFIG_DIR = os.path.dirname(os.path.abspath(configs.__file__))
# config.model.name -> the typed section its model fields come from
MODEL_SECTIONS = {"transformer": TransformerConfig, "blt": BLTConfig, "hypernet": HypernetConfig}
USER_ERRORS = (
  ConfigError,
  CheckpointError,
  CorpusError,
  TrainingDivergedError,
  WorkdirBusyError,
  UnsupportedPathError,
  distributed.DistributedError,
)

_LIST_FIELDS = flags.DEFINE_bool(
  "list_fields",
  False,
  "Print every field of --config (set as --config.<field>=...), its default there and its "
  "meaning, then exit.",
)
_DISTRIBUTED = flags.DEFINE_enum(
  "distributed",
  "auto",
  distributed.MODES,
  "Start JAX's multi-process runtime: auto = when --coordinator_address (or "
  "$JAX_COORDINATOR_ADDRESS) is given or JAX detects a cluster (Cloud TPU pod, SLURM, "
  "Open MPI); on = always; off = never (one process).",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "host:port of process 0, the same on every process ($JAX_COORDINATOR_ADDRESS).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Processes in the job ($JAX_NUM_PROCESSES)."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "This process's index in [0, num_processes) ($JAX_PROCESS_ID)."
)


def config_names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and f[0] != "_")


def define_config(example: str):
  """The required --config flag (a ConfigDict once parsed)."""
  return config_flags.DEFINE_config_file(
    "config",
    None,
    f"Required. A config name ({', '.join(config_names())}) or a path to a configs/*.py file, "
    f"with an optional ':<preset>'; e.g. --config={example}.",
  )


def locate(spec: str) -> str:
  """The config file `spec` names (a name, a path from here, or configs/<file> from anywhere)."""
  path, colon, preset = spec.partition(":")
  tries = [path, os.path.join(CONFIG_DIR, path), os.path.join(CONFIG_DIR, f"{path}.py")]
  if os.path.dirname(path) == "configs":  # the README's form, run outside the repository
    tries.append(os.path.join(CONFIG_DIR, os.path.basename(path)))
  for t in tries:
    if os.path.isfile(t):
      return os.path.abspath(t) + colon + preset
  raise ConfigError(
    f"--config={spec}: no such config file; give a name ({', '.join(config_names())}) "
    "or a path to a configs/*.py file"
  )


def run(main) -> None:
  """app.run(main) with the checks above."""

  def guarded(argv):
    try:
      start_distributed()
      return main(argv)
    except USER_ERRORS as e:
      sys.stderr.write(f"error: {e}\n")
      sys.exit(1)

  app.run(guarded, flags_parser=parse_flags)


def list_fields(config) -> str:
  """The table `--list_fields` prints: field, value, meaning (from the comments of the typed
  config sections and of the config files)."""
  comments = {}
  model = MODEL_SECTIONS.get(config.get("model", {}).get("name", "transformer"))
  for cls in (model, PatchingConfig):
    if cls is not None:
      found = field_comments(inspect.getsource(cls))
      comments.update({f"{cls.section}.{k}": v for k, v in found.items()})
  for name in config_names():
    with open(os.path.join(CONFIG_DIR, f"{name}.py")) as f:
      comments = {**field_comments(f.read()), **comments}
  rows = describe_fields(config, comments)
  width = max(len(path) for path, _, _ in rows)
  return "\n".join(f"{p:<{width}}  {v}" + (f"  # {m}" if m else "") for p, v, m in rows)


def start_distributed() -> bool:
  """`jaxtok.distributed.initialize` from the flags; before any computation."""
  return distributed.initialize(
    _DISTRIBUTED.value,
    coordinator_address=_COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
  )


def parse_flags(argv: list[str]) -> list[str]:
  argv = list(argv)
  try:
    at = _config_arg(argv)
    if at is not None:
      spec = argv[at].split("=", 1)[1] if "=" in argv[at] else argv.pop(at + 1)
      argv[at] = f"--config={locate(spec)}"
      config = _load(argv[at].split("=", 1)[1])
      if "--list_fields" in argv:  # before the other flags are required
        print(list_fields(config))
        sys.exit(0)
      _check_overrides(config, argv)
    elif "config" in flags.FLAGS:
      raise ConfigError(
        "--config is required: a config name "
        f"({', '.join(config_names())}) or a path to a configs/*.py file"
      )
  except ConfigError as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
    sys.exit(1)
  return app.parse_flags_with_usage(argv)


def _config_arg(argv: list[str]) -> int | None:
  for i, a in enumerate(argv[1:], 1):
    if a in ("--config", "-config") or a.startswith(("--config=", "-config=")):
      if "=" not in a and i + 1 >= len(argv):
        raise ConfigError("--config needs a value")
      return i
  return None


def _load(spec: str):
  """The config a located `path[:preset]` spec names."""
  path, _, preset = spec.partition(":")
  loader = importlib.util.spec_from_file_location("_checked_config", path)
  module = importlib.util.module_from_spec(loader)
  loader.loader.exec_module(module)
  return module.get_config(*([preset] if preset else []))


def _check_overrides(config, argv: list[str]) -> None:
  for a in argv[1:]:
    for prefix in ("--config.", "-config.", "--noconfig.", "-noconfig."):
      if a.startswith(prefix):
        check_field(config, a[len(prefix) :].split("=", 1)[0])
