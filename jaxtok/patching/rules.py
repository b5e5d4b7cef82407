"""Patch boundary rules: which bytes start a patch.

Every rule maps [B, N] arrays to a boolean `starts_BxN`, is jit-able with
static shapes and works on packed rows: `segment_ids` (0 = padding) separate
document pieces and `positions` count from 0 at the start of each piece.
Common to all rules (BLT): positions 0 and 1 of a piece always start a patch,
so the BOS byte is a patch of its own; padding bytes never start one.

Entropies follow BLT's convention: `entropies[t] = H(x_t | x_<t)` in nats,
the entropy of the entropy model's prediction for byte t, made at t-1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtok.data.codec import OFFSET


def forced_starts(positions_BxN: jax.Array, segment_ids_BxN: jax.Array) -> jax.Array:
  """Positions 0 and 1 of every document piece."""
  return (segment_ids_BxN > 0) & (positions_BxN <= 1)


def static_starts(positions_BxN, segment_ids_BxN, patch_size: int) -> jax.Array:
  """Patches of `patch_size` bytes after the BOS patch: starts at 1, 1+p, 1+2p, ..."""
  regular = (positions_BxN >= 1) & ((positions_BxN - 1) % patch_size == 0)
  return forced_starts(positions_BxN, segment_ids_BxN) | ((segment_ids_BxN > 0) & regular)


def spacelike(ids_BxN: jax.Array) -> jax.Array:
  """Neither an ASCII letter/digit nor a UTF-8 continuation byte (special ids are spacelike)."""
  b = ids_BxN - OFFSET
  alnum = (
    ((b >= ord("0")) & (b <= ord("9")))
    | ((b >= ord("A")) & (b <= ord("Z")))
    | ((b >= ord("a")) & (b <= ord("z")))
  )
  continuation = (b >= 0x80) & (b <= 0xBF)
  return ~(alnum | continuation)


def _shift(x_BxN, fill=False):
  """x[t-1] at t (`fill` at t = 0)."""
  return jnp.pad(x_BxN[:, :-1], ((0, 0), (1, 0)), constant_values=fill)


def space_ends(ids_BxN) -> jax.Array:
  """Bytes that end their patch under the reference rule: a spacelike byte after a
  non-spacelike one, or a special id (< 4)."""
  s = spacelike(ids_BxN)
  return (s & ~_shift(s)) | (ids_BxN < OFFSET)


def space_starts(ids_BxN, positions_BxN, segment_ids_BxN, rule: str = "end") -> jax.Array:
  """Space patching.

  end (the reference): byte t starts a patch iff byte t-1 ends one (`space_ends`), so the
      boundary before byte t depends only on bytes < t;
  start: a spacelike byte starts a patch unless the byte before it was spacelike too.
  """
  if rule == "end":
    by_rule = _shift(space_ends(ids_BxN))
  elif rule == "start":
    s = spacelike(ids_BxN)
    by_rule = s & ~_shift(s)
  else:
    raise ValueError(f"space rule must be 'end' or 'start', got {rule!r}")
  by_rule &= (positions_BxN >= 2) & (segment_ids_BxN > 0)
  return forced_starts(positions_BxN, segment_ids_BxN) | by_rule


def entropy_starts(
  entropies_BxN,
  positions_BxN,
  segment_ids_BxN,
  *,
  rule: str = "global",
  threshold: float = 0.0,
  threshold_add: float = 0.0,
  monotonic_start_at_2: bool = False,
  top_k: int = 0,
) -> jax.Array:
  """BLT entropy patching.

  global:    t starts a patch iff H_t > threshold;
  monotonic: t starts a patch iff H_t - H_{t-1} > threshold (and, with
             `monotonic_start_at_2` as in the reference, byte 2 always does);
  global_monotonic: t starts a patch iff H_t > threshold and H_t - H_{t-1} > threshold_add;
  topk:      the `top_k` bytes of the row with the highest H_t start patches
             (looks at the whole row, so it is not causal).
  """
  h = entropies_BxN.astype(jnp.float32)
  candidate = (positions_BxN >= 2) & (segment_ids_BxN > 0)
  rise = h - _shift(h, 0.0)
  if rule == "global":
    rule_starts = h > threshold
  elif rule == "monotonic":
    rule_starts = rise > threshold
    if monotonic_start_at_2:
      rule_starts |= positions_BxN == 2
  elif rule == "global_monotonic":
    rule_starts = (h > threshold) & (rise > threshold_add)
  elif rule == "topk":
    n = h.shape[1]
    k = min(top_k, n)
    scores = jnp.where(candidate, h, -jnp.inf)
    vals, idx = jax.lax.top_k(scores, k)
    rows = jnp.arange(h.shape[0])[:, None]
    rule_starts = jnp.zeros(h.shape, bool).at[rows, idx].set(jnp.isfinite(vals))
  else:
    raise ValueError(
      f"entropy rule must be 'global', 'monotonic', 'global_monotonic' or 'topk', got {rule!r}"
    )
  return forced_starts(positions_BxN, segment_ids_BxN) | (candidate & rule_starts)


def limit_patch_length(starts_BxN, segment_ids_BxN, max_patch_length: int) -> jax.Array:
  """Splits every patch longer than `max_patch_length` into pieces of that length."""
  if not max_patch_length:
    return starts_BxN
  idx = jnp.arange(starts_BxN.shape[1], dtype=jnp.int32)
  last = jax.lax.cummax(jnp.where(starts_BxN, idx, 0), axis=1)  # latest rule start at or before t
  split = ((idx - last) % max_patch_length == 0) & (segment_ids_BxN > 0)
  return starts_BxN | split


def patch_starts(
  cfg,
  ids_BxN: jax.Array,
  positions_BxN: jax.Array,
  segment_ids_BxN: jax.Array,
  entropies_BxN: jax.Array | None = None,
) -> jax.Array:
  """The starts of `cfg` (a PatchingConfig), including the max_patch_length split."""
  if cfg.scheme == "static":
    starts = static_starts(positions_BxN, segment_ids_BxN, cfg.patch_size)
  elif cfg.scheme == "space":
    starts = space_starts(ids_BxN, positions_BxN, segment_ids_BxN, cfg.space_rule)
  elif cfg.scheme == "entropy":
    if entropies_BxN is None:
      raise ValueError("entropy patching needs the entropies of the bytes")
    starts = entropy_starts(
      entropies_BxN,
      positions_BxN,
      segment_ids_BxN,
      rule=cfg.rule,
      threshold=cfg.threshold,
      threshold_add=cfg.threshold_add,
      monotonic_start_at_2=cfg.monotonic_start_at_2,
      top_k=cfg.top_k,
    )
  else:
    raise ValueError(f"unknown patching scheme {cfg.scheme!r}")
  return limit_patch_length(starts, segment_ids_BxN, cfg.max_patch_length)
