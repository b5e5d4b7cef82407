"""The switches that make jaxtok's BLT compute what the BLT reference computes.

One table, used three ways: the Hugging Face import sets the reference values
(released weights were trained with them), the export refuses models whose
settings the reference cannot reproduce, and `python -m experiments.differences`
prints it as the README's table of deliberate differences. The "reference"
column was measured by a weight-mapped comparison with the reference code
(and, where it has them, checked against `transformers`' BLT in the tests).
"""

from __future__ import annotations

import dataclasses

from jaxtok.models.blt import BLTConfig
from jaxtok.patching.config import PatchingConfig


@dataclasses.dataclass(frozen=True)
class Switch:
  section: str  # "model" or "patching"
  field: str
  reference: object  # the value that reproduces the reference
  what: str  # what the reference does
  why: str  # why jaxtok's default is what it is
  changes_outputs: bool = True  # False: only initialisation / sizing of new models


SWITCHES = (
  Switch(
    "model",
    "cross_attn_double_residual",
    True,
    "its cross-attention module returns `out + x` and the caller adds `x` again: 2x + O "
    "(transformers' `BltCrossAttention` too)",
    "x + O is the usual residual; 2x doubles the stream at every cross-attention",
  ),
  Switch(
    "model",
    "latent_final_norm",
    False,
    "no norm after the latent transformer (the decoder's cross-attention normalises its keys)",
    "a final norm, as in any pre-norm stack",
  ),
  Switch(
    "model",
    "cross_attn_window_encoder",
    1,
    "a patch query sees its own patch's bytes (window `None`, as in the released models); "
    "`cross_attn_window_encoder=w` widens it to w patches",
    "same as the reference; w > 1 runs in training and uncached generation",
  ),
  Switch(
    "model",
    "cross_attn_window_decoder",
    1,
    "a byte sees the latent it reads (window `None`, as in the released models); "
    "`cross_attn_window_decoder=w` adds the w-1 latents before it",
    "same as the reference; w > 1 runs in training and uncached generation",
  ),
  Switch(
    "model",
    "ffn_multiple_of",
    256,
    "SwiGLU width 8d/3 rounded up to a multiple of 256",
    "64 wastes less width at the small sizes jaxtok trains",
    changes_outputs=False,
  ),
  Switch(
    "model",
    "init",
    "reference",
    "truncated normal at ±3σ, σ = fan_in^-1/2 for every linear layer, d^-1/2 for embeddings",
    "normal, residual outputs scaled by 1/sqrt(2·depth), embeddings σ = 1",
    changes_outputs=False,
  ),
  Switch(
    "patching",
    "space_rule",
    "end",
    "a space-like byte ends its patch: the boundary before byte t+1 depends on bytes <= t, so "
    "the usual decoder alignment does not leak",
    "same as the reference (jaxtok's earlier rule, a space-like byte starting a patch, is "
    "`space_rule=start`)",
  ),
  Switch(
    "patching",
    "monotonic_start_at_2",
    True,
    "the monotonic rule always starts a patch at byte 2",
    "byte 2 starts a patch only if its entropy rose by more than the threshold",
  ),
  Switch(
    "patching",
    "rule",
    "global",
    "global threshold in the released models; also monotonic, and global + monotonic "
    "(`threshold_add`: H_t > θ and H_t - H_{t-1} > θ_add) — jaxtok's `global_monotonic`",
    "same (and top-k)",
  ),
)


def _default(s: Switch):
  cls = BLTConfig if s.section == "model" else PatchingConfig
  return next(f.default for f in dataclasses.fields(cls) if f.name == s.field)


def model_settings() -> dict:
  """BLTConfig fields set to the reference's values."""
  return {s.field: s.reference for s in SWITCHES if s.section == "model"}


def export_problems(cfg: BLTConfig) -> list[str]:
  """Model settings of `cfg` that change outputs and that the reference cannot reproduce."""
  return [
    f"model.{s.field}={getattr(cfg, s.field)!r} (the reference: {s.reference!r})"
    for s in SWITCHES
    if s.section == "model" and s.changes_outputs and getattr(cfg, s.field) != s.reference
  ]


def markdown() -> str:
  """The README's table: every switch, jaxtok's default, the reference's value, and why."""
  rows = [
    "| setting | jaxtok default | reference | what the reference does (measured) "
    "| jaxtok's reason |",
    "|---|---|---|---|---|",
  ]
  for s in SWITCHES:
    d = _default(s)
    mark = "" if d == s.reference else " **≠**"
    rows.append(
      f"| `{s.section}.{s.field}` | `{d!r}`{mark} | `{s.reference!r}` | {s.what} | {s.why} |"
    )
  return "\n".join(rows) + "\n"
