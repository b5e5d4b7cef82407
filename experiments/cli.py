"""What every experiment's command line shares.

* `--config` is required, and is a config name (`--config=tiny`, looked up in the
  installed `configs` package), or a path, from any directory, with an optional
  `:<preset>` (`--config=configs/blt_compare.py:small`).
* `--config.a.b=v` overrides are checked against the config before anything runs:
  an unknown field is reported by name, with the fields there are.
* Errors of the user's input or of the workdir end the program with their message
  (exit status 1) instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from absl import app, flags
from ml_collections import config_flags

import configs
from jaxtok.checkpoint import CheckpointError
from jaxtok.configlib import ConfigError, check_field
from jaxtok.data.corpora import CorpusError
from jaxtok.train.lock import WorkdirBusyError
from jaxtok.train.trainer import TrainingDivergedError

CONFIG_DIR = os.path.dirname(os.path.abspath(configs.__file__))
USER_ERRORS = (ConfigError, CheckpointError, CorpusError, TrainingDivergedError, WorkdirBusyError)


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
      return main(argv)
    except USER_ERRORS as e:
      sys.stderr.write(f"error: {e}\n")
      sys.exit(1)

  app.run(guarded, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
  argv = list(argv)
  try:
    at = _config_arg(argv)
    if at is not None:
      spec = argv[at].split("=", 1)[1] if "=" in argv[at] else argv.pop(at + 1)
      argv[at] = f"--config={locate(spec)}"
      _check_overrides(argv[at].split("=", 1)[1], argv)
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


def _check_overrides(spec: str, argv: list[str]) -> None:
  path, _, preset = spec.partition(":")
  loader = importlib.util.spec_from_file_location("_checked_config", path)
  module = importlib.util.module_from_spec(loader)
  loader.loader.exec_module(module)
  config = module.get_config(*([preset] if preset else []))
  for a in argv[1:]:
    for prefix in ("--config.", "-config.", "--noconfig.", "-noconfig."):
      if a.startswith(prefix):
        check_field(config, a[len(prefix) :].split("=", 1)[0])
