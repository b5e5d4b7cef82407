"""From patch start flags to everything a BLT needs, with a static patch count.

Rows hold at most `max_patches` (P) patches. Bytes of a patch beyond the P-th
("overflow") belong to no patch slot: the encoder pools nothing from them and
the decoder gives them no latent, so they are predicted by the local models
alone; `overflow_B` counts them so a config whose P is too small shows up.
Whether a byte overflows depends on the patches of the documents before it in
the row, so evaluation uses P = T slots (`models.blt.blt_eval_loss`): no byte
can overflow and a document's predictions do not depend on its neighbours.

Segment ids below are what `jaxtok.nn.attention.Mask` needs: 0 means "sees
nothing / is never seen", and equal non-zero ids attend to each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class PatchLayout:
  patch_ids_BxT: jax.Array  # patch index of each byte (may be >= P); -1 for padding
  enc_seg_BxT: jax.Array  # patch index + 1 of each byte, 0 for padding / overflow
  dec_seg_BxT: jax.Array  # patch index + 1 whose latent byte t reads, 0 for none
  patch_seg_BxP: jax.Array  # j + 1 for patch slots in use, 0 for empty slots
  doc_BxP: jax.Array  # document segment id of each patch (0 for empty slots)
  lengths_BxP: jax.Array  # bytes per patch
  overflow_B: jax.Array  # bytes that fell beyond the last patch slot


def patch_ids(starts_BxT: jax.Array, segment_ids_BxT: jax.Array) -> jax.Array:
  """Index of the patch each byte belongs to (0-based per row); -1 for padding."""
  ids = jnp.cumsum(starts_BxT.astype(jnp.int32), axis=1) - 1
  return jnp.where(segment_ids_BxT > 0, ids, -1)


def segment_positions(segment_ids_BxN: jax.Array) -> jax.Array:
  """Index of each element in its run of equal segment ids: 0 where a document starts.

  The latent transformer's positions: a document's patches are numbered from 0 in
  every row, whatever is packed before it.
  """
  idx = jnp.arange(segment_ids_BxN.shape[1], dtype=jnp.int32)
  prev = jnp.pad(segment_ids_BxN[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
  first = jax.lax.cummax(jnp.where(segment_ids_BxN != prev, idx, 0), axis=1)
  return idx - first


def patch_lengths(starts_BxT, segment_ids_BxT, max_patches: int) -> jax.Array:
  """Bytes in each of the first `max_patches` patches of every row (0 = no patch)."""
  ids = patch_ids(starts_BxT, segment_ids_BxT)
  slot = jnp.where((ids >= 0) & (ids < max_patches), ids, max_patches)
  rows = jnp.arange(ids.shape[0])[:, None]
  return jnp.zeros((ids.shape[0], max_patches), jnp.int32).at[rows, slot].add(1, mode="drop")


def layout(
  starts_BxN: jax.Array, segment_ids_BxT: jax.Array, max_patches: int, *, lookahead: bool
) -> PatchLayout:
  """Patch layout of a batch of rows of T bytes.

  `starts_BxN` has N = T + 1 columns: column T tells whether the byte after the
  row (the last target) starts a patch. With `lookahead` byte t reads the latent
  of the patch before the one holding byte t+1 (its own patch when t+1 starts a
  new one), which is BLT's decoder alignment; without it (space patches, whose
  boundaries depend on the byte itself) byte t reads the patch before its own.
  Either way the latent read by byte t only covers bytes <= t, of its own document.
  """
  b, t = segment_ids_BxT.shape
  if starts_BxN.shape != (b, t + 1):
    raise ValueError(f"starts must be [B, T+1] = {(b, t + 1)}, got {starts_BxN.shape}")
  valid = segment_ids_BxT > 0
  starts = starts_BxN[:, :t] & valid
  ids = patch_ids(starts, segment_ids_BxT)
  in_slot = valid & (ids < max_patches)
  enc_seg = jnp.where(in_slot, ids + 1, 0)

  if lookahead:
    # Patch of byte t+1, minus one: count the start flag of column t+1 too.
    dec = ids + starts_BxN[:, 1:].astype(jnp.int32) - 1
  else:
    dec = ids - 1
  # The first patch of each document piece: no latent from an earlier document.
  piece_start = valid & (segment_ids_BxT != jnp.pad(segment_ids_BxT[:, :-1], ((0, 0), (1, 0))))
  first = jax.lax.cummax(jnp.where(piece_start, ids, -1), axis=1)
  dec_ok = valid & (dec >= first) & (dec >= 0) & (dec < max_patches)
  dec_seg = jnp.where(dec_ok, dec + 1, 0)

  rows = jnp.arange(b)[:, None]
  slot = jnp.where(in_slot, ids, max_patches)
  lengths = jnp.zeros((b, max_patches), jnp.int32).at[rows, slot].add(1, mode="drop")
  doc = jnp.zeros((b, max_patches), jnp.int32).at[rows, slot].max(segment_ids_BxT, mode="drop")
  patch_seg = jnp.where(lengths > 0, jnp.arange(1, max_patches + 1, dtype=jnp.int32), 0)
  overflow = jnp.sum(valid & ~in_slot, axis=1)
  return PatchLayout(
    patch_ids_BxT=ids,
    enc_seg_BxT=enc_seg,
    dec_seg_BxT=dec_seg,
    patch_seg_BxP=patch_seg,
    doc_BxP=doc,
    lengths_BxP=lengths,
    overflow_B=overflow,
  )
