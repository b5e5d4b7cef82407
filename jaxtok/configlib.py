"""Typed config sections read from ml_collections, with errors that name the bad field."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


def require(ok: bool, field: str, why: str) -> None:
  """Raises ValueError naming `config.<field>` unless `ok`."""
  if not ok:
    raise ValueError(f"config.{field}: {why}")


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
