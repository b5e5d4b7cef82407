"""Patching: which bytes start a patch (static, space, entropy rules, max length),
the static-shape patch layout a BLT consumes, and an incremental patcher for generation."""

from jaxtok.patching.config import BLT_THRESHOLD, PatchingConfig
from jaxtok.patching.incremental import IncrementalPatcher, PatcherState
from jaxtok.patching.layout import (
  PatchLayout,
  layout,
  patch_ids,
  patch_lengths,
  segment_positions,
)
from jaxtok.patching.rules import (
  entropy_starts,
  forced_starts,
  limit_patch_length,
  patch_starts,
  space_starts,
  spacelike,
  static_starts,
)

__all__ = [
  "BLT_THRESHOLD",
  "IncrementalPatcher",
  "PatchLayout",
  "PatcherState",
  "PatchingConfig",
  "entropy_starts",
  "forced_starts",
  "layout",
  "limit_patch_length",
  "patch_ids",
  "patch_lengths",
  "patch_starts",
  "segment_positions",
  "space_starts",
  "spacelike",
  "static_starts",
]
