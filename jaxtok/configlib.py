"""Typed config sections read from ml_collections, with errors that name the bad field."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, ClassVar

from ml_collections import config_dict


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field (`config.a.b`)."""


def require(ok: bool, field: str, why: str) -> None:
  """Raises ConfigError naming `config.<field>` unless `ok`."""
  if not ok:
    raise ConfigError(f"config.{field}: {why}")


def check_field(config: Any, path: str) -> None:
  """ConfigError naming `config.<path>` (and the fields there are) unless the config has it."""
  node, parts = config, path.split(".")
  for i, part in enumerate(parts):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      parent = ".".join(["config", *parts[:i]])
      close = difflib.get_close_matches(part, keys, n=3)
      hint = f" Did you mean {', '.join(f'{parent}.{c}' for c in close)}?" if close else ""
      what = f"{parent} has {sorted(keys)}" if keys else f"{parent} is a value, not a section"
      raise ConfigError(f"config.{path}: no such field; {what}.{hint}")
    node = node[part]


class Section:
  """Base of the frozen config dataclasses built from one config section (`config.model`, ...).

  Subclasses set `section`, may list fields the config cannot set (`internal`, filled in by
  code) and keys it may carry that are not fields (`ignored`, e.g. the task `name`), and
  implement `validate()` with `self.need(...)`.
  """

  section: ClassVar[str]
  internal: ClassVar[frozenset[str]] = frozenset()
  ignored: ClassVar[frozenset[str]] = frozenset()

  @classmethod
  def known_fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - cls.internal

  @classmethod
  def from_dict(cls, d: Any, **overrides):
    """From a dict/ConfigDict (+ internal fields as keywords); unknown fields are errors."""
    d = {k: v for k, v in dict(d).items() if k not in cls.ignored}
    known = cls.known_fields()
    unknown = set(d) - known
    require(not unknown, cls.section, f"unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    cfg = cls(**d, **overrides)
    cfg.validate()
    return cfg

  def validate(self) -> None:
    pass

  def need(self, ok: bool, field: str, why: str) -> None:
    require(ok, f"{self.section}.{field}={getattr(self, field)!r}", why)


def defaults(cls: type[Section], **overrides) -> config_dict.ConfigDict:
  """A config section holding the fields of `cls` at their defaults (+ `overrides`).

  The dataclass is the one place a default is written. Fields whose default is
  None become typed placeholders, so `--config.<section>.<field>=<value>` can set them.
  """
  hints = typing.get_type_hints(cls)
  out = {}
  for f in dataclasses.fields(cls):
    if f.name in cls.internal:
      continue
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    value = overrides.pop(f.name, default)
    if value is None:
      kinds = [t for t in typing.get_args(hints[f.name]) if t is not type(None)]
      value = config_dict.placeholder(kinds[0] if len(kinds) == 1 else object)
    out[f.name] = value
  out.update(overrides)  # keys that are not fields, e.g. the model's `name`
  return config_dict.ConfigDict(out)
