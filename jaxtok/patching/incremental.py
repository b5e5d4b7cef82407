"""Patch boundaries one byte at a time, for generation.

`step` decides whether byte t starts a patch from a constant-size state (the
position, the previous byte's class and entropy, the length of the current run)
and, for entropy patching, the entropy H(x_t | x_<t) that the entropy model's
KV-cached decode step produced at t-1; nothing of the prefix is re-run. For
static, entropy and reference ("end") space patching the decision needs no byte t
(`needs_byte` is False: `step` is given byte t-1 instead), so a generator knows
whether the next byte starts a patch before it samples that byte. Equal to
`rules.patch_starts` on a single document.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxtok.data.codec import OFFSET
from jaxtok.patching.config import PatchingConfig
from jaxtok.patching.rules import spacelike


@struct.dataclass
class PatcherState:
  position: jax.Array  # B int32: index of the next byte in its document
  prev_spacelike: jax.Array  # B bool: of the byte before the last one given
  prev_entropy: jax.Array  # B float32
  run: jax.Array  # B int32: bytes since the last start made by the rule itself


class IncrementalPatcher:
  def __init__(self, cfg: PatchingConfig):
    if not cfg.causal:
      raise ValueError(
        f"config.patching.rule={cfg.rule!r}: top-k patching looks at the whole row and "
        "cannot decide boundaries one byte at a time"
      )
    self.cfg = cfg

  @property
  def needs_byte(self) -> bool:
    """Whether `step` for byte t needs byte t itself (else it is given byte t-1)."""
    return self.cfg.scheme == "space" and self.cfg.space_rule == "start"

  def init(self, batch: int) -> PatcherState:
    return PatcherState(
      position=jnp.zeros((batch,), jnp.int32),
      prev_spacelike=jnp.zeros((batch,), bool),
      prev_entropy=jnp.zeros((batch,), jnp.float32),
      run=jnp.zeros((batch,), jnp.int32),
    )

  def step(
    self, state: PatcherState, ids_B: jax.Array, entropies_B: jax.Array | None = None
  ) -> tuple[PatcherState, jax.Array]:
    """(new state, whether byte t starts a patch) for byte t = state.position.

    `ids_B` is byte t if `needs_byte`, else byte t-1; `entropies_B` is H(x_t | x_<t).
    """
    cfg, pos = self.cfg, state.position
    if cfg.scheme == "static":
      rule = (pos >= 1) & ((pos - 1) % cfg.patch_size == 0)
    elif cfg.scheme == "space":
      rule = spacelike(ids_B) & ~state.prev_spacelike
      if not self.needs_byte:  # byte t-1 ends its patch
        rule |= ids_B < OFFSET
    else:
      h = entropies_B.astype(jnp.float32)
      rise = h - state.prev_entropy
      if cfg.rule == "global":
        rule = h > cfg.threshold
      elif cfg.rule == "monotonic":
        rule = (rise > cfg.threshold) | ((pos == 2) & cfg.monotonic_start_at_2)
      else:  # global_monotonic
        rule = (h > cfg.threshold) & (rise > cfg.threshold_add)
    rule_start = (pos <= 1) | ((pos >= 2) & rule)
    run = jnp.where(rule_start, 0, state.run + 1)
    start = rule_start
    if cfg.max_patch_length:
      start = start | (run % cfg.max_patch_length == 0)
    new = PatcherState(
      position=pos + 1,
      prev_spacelike=spacelike(ids_B) if cfg.scheme == "space" else state.prev_spacelike,
      prev_entropy=state.prev_entropy if entropies_B is None else entropies_B.astype(jnp.float32),
      run=run,
    )
    return new, start
