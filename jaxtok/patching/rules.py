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


def space_starts(ids_BxN, positions_BxN, segment_ids_BxN) -> jax.Array:
  """A spacelike byte starts a patch unless the byte before it was spacelike too."""
  s = spacelike(ids_BxN)
  prev = jnp.pad(s[:, :-1], ((0, 0), (1, 0)))
  rule = s & ~prev & (positions_BxN >= 2) & (segment_ids_BxN > 0)
  return forced_starts(positions_BxN, segment_ids_BxN) | rule


def entropy_starts(
  entropies_BxN,
  positions_BxN,
  segment_ids_BxN,
  *,
  rule: str = "global",
  threshold: float = 0.0,
  top_k: int = 0,
) -> jax.Array:
  """BLT entropy patching.

  global:    t starts a patch iff H_t > threshold;
  monotonic: t starts a patch iff H_t - H_{t-1} > threshold;
  topk:      the `top_k` bytes of the row with the highest H_t start patches
             (looks at the whole row, so it is not causal).
  """
  h = entropies_BxN.astype(jnp.float32)
  candidate = (positions_BxN >= 2) & (segment_ids_BxN > 0)
  if rule == "global":
    rule_starts = h > threshold
  elif rule == "monotonic":
    prev = jnp.pad(h[:, :-1], ((0, 0), (1, 0)))
    rule_starts = h - prev > threshold
  elif rule == "topk":
    n = h.shape[1]
    k = min(top_k, n)
    scores = jnp.where(candidate, h, -jnp.inf)
    vals, idx = jax.lax.top_k(scores, k)
    rows = jnp.arange(h.shape[0])[:, None]
    rule_starts = jnp.zeros(h.shape, bool).at[rows, idx].set(jnp.isfinite(vals))
  else:
    raise ValueError(f"entropy rule must be 'global', 'monotonic' or 'topk', got {rule!r}")
  return forced_starts(positions_BxN, segment_ids_BxN) | (candidate & rule_starts)


def limit_patch_length(starts_BxN, segment_ids_BxN, max_patch_length: int) -> jax.Array:
  """Splits every patch longer than `max_patch_length` into pieces of that length."""
  if not max_patch_length:
    return starts_BxN
  idx = jnp.arange(starts_BxN.shape[1], dtype=jnp.int32)
  last = jax.lax.cummax(jnp.where(starts_BxN, idx, 0), axis=1)  # latest rule start at or before t
  split = ((idx - last) % max_patch_length == 0) & (segment_ids_BxN > 0)
  return starts_BxN | split


def rule_starts(
  cfg,
  ids_BxN: jax.Array,
  positions_BxN: jax.Array,
  segment_ids_BxN: jax.Array,
  entropies_BxN: jax.Array | None = None,
) -> jax.Array:
  """The starts the rule of `cfg` (a PatchingConfig) makes, before the max_patch_length split."""
  if cfg.scheme == "static":
    return static_starts(positions_BxN, segment_ids_BxN, cfg.patch_size)
  if cfg.scheme == "space":
    return space_starts(ids_BxN, positions_BxN, segment_ids_BxN)
  if cfg.scheme == "entropy":
    if entropies_BxN is None:
      raise ValueError("entropy patching needs the entropies of the bytes")
    return entropy_starts(
      entropies_BxN,
      positions_BxN,
      segment_ids_BxN,
      rule=cfg.rule,
      threshold=cfg.threshold,
      top_k=cfg.top_k,
    )
  raise ValueError(f"unknown patching scheme {cfg.scheme!r}")


def patch_starts(
  cfg,
  ids_BxN: jax.Array,
  positions_BxN: jax.Array,
  segment_ids_BxN: jax.Array,
  entropies_BxN: jax.Array | None = None,
) -> jax.Array:
  """The starts of `cfg` (a PatchingConfig), including the max_patch_length split."""
  starts = rule_starts(cfg, ids_BxN, positions_BxN, segment_ids_BxN, entropies_BxN)
  return limit_patch_length(starts, segment_ids_BxN, cfg.max_patch_length)
