"""Training a BLT: the host side of its batches (patch starts, hash n-gram ids) and the task."""

from __future__ import annotations

import functools
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np

from jaxtok import patching
from jaxtok.data import codec, hashing
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.blt import BLT, BLTConfig, blt_eval_loss, blt_flops, blt_loss, flops_by_part
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.patching.entropy import EntropyStore, per_byte_entropies
from jaxtok.train.task import Task


class BLTBatches:
  """Host side of BLT training: packed byte rows -> + patch starts (+ hash ids).

  Entropies come from the entropy model run on the rows (on the fly) or from
  the packer (precomputed, feature "next_entropies"). Patch starts get one
  column more than the row: the byte after it (the last target) may start a
  patch, which the decoder alignment needs. On the fly, the entropy model and
  the patching rule run in one jitted call: one device round trip per batch.
  """

  def __init__(self, pcfg: patching.PatchingConfig, mcfg: BLTConfig, *, entropy_model=None):
    self.pcfg, self.mcfg = pcfg, mcfg
    self._entropy_model = entropy_model  # None: loaded from its workdir on first use
    self._lock = threading.Lock()
    self._starts = jax.jit(functools.partial(patching.patch_starts, pcfg))
    self._starts_on_the_fly = jax.jit(self._entropy_starts)

  def entropy_model(self) -> EntropyModel:
    with self._lock:
      if self._entropy_model is None:
        self._entropy_model = EntropyModel.load(self.pcfg.entropy_model_workdir)
      return self._entropy_model

  def _entropy_starts(self, params, inputs, seg, pos, ids_n, pos_n, seg_n):
    next_h = self.entropy_model().apply(params, inputs, seg, pos)
    h = jnp.pad(next_h, ((0, 0), (1, 0)))  # H(x_t | x_<t) for t = 0..T, as per_byte_entropies
    return patching.patch_starts(self.pcfg, ids_n, pos_n, seg_n, h)

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    batch = dict(batch)
    inputs, targets = batch["inputs"], batch["targets"]
    seg, pos = batch["segment_ids"], batch["positions"]
    # The row plus the byte after it (PAD when the document ends in the row).
    nxt = targets[:, -1:]
    ids_n = np.concatenate([inputs, nxt], axis=1)
    seg_n = np.concatenate([seg, np.where(nxt >= 0, seg[:, -1:], 0)], axis=1)
    pos_n = np.concatenate([pos, pos[:, -1:] + 1], axis=1)
    next_h = batch.pop("next_entropies", None)
    if self.pcfg.scheme != "entropy":
      starts = self._starts(ids_n, pos_n, seg_n)
    elif next_h is not None:  # precomputed
      starts = self._starts(ids_n, pos_n, seg_n, per_byte_entropies(next_h))
    else:
      em = self.entropy_model()
      starts = self._starts_on_the_fly(em.params, inputs, seg, pos, ids_n, pos_n, seg_n)
    batch["patch_starts"] = np.asarray(starts)
    # Slots sized from the batch change the compiled step: with several processes each
    # would size its own batch and run another program (mismatched collectives).
    if self.pcfg.slot_bucket and jax.process_count() == 1:
      batch["patch_lengths"] = patch_lengths(
        batch["patch_starts"], seg, self.mcfg.max_patches, self.pcfg.slot_bucket
      )
    if self.mcfg.n_hash_tables:
      batch["hash_ids"] = hashing.hash_ids(
        inputs,
        seg,
        ngram_sizes=self.mcfg.hash_ngram_sizes,
        n_hash_functions=self.mcfg.hash_functions,
        vocab=self.mcfg.hash_vocab,
      )
    return batch


def patch_lengths(starts_BxN, segment_ids_BxT, max_patches: int, bucket: int) -> np.ndarray:
  """Bytes in each patch slot, [B, P] with P = the batch's most patches in a row rounded up
  to a multiple of `bucket`, at most `max_patches` (`blt_loss` runs with P slots: the
  slots no row uses cost the latent transformer time and change nothing)."""
  valid = segment_ids_BxT > 0
  ids = np.where(valid, np.cumsum(starts_BxN[:, :-1] & valid, axis=1) - 1, -1)
  need = int(ids.max()) + 1 if ids.size else 1
  p = min(max_patches, max(bucket, -(-need // bucket) * bucket))
  out = np.zeros((ids.shape[0], p), np.int32)
  for b, row in enumerate(ids):
    row = row[(row >= 0) & (row < p)]
    out[b] = np.bincount(row, minlength=p)
  return out


def measure_bytes_per_patch(batches: BLTBatches, packed, n_bytes: int = 32768) -> float:
  """Mean patch size over about `n_bytes` of batches (no patch-slot limit)."""
  nbytes = npatches = 0
  while nbytes < n_bytes:
    b = batches(next(packed))
    valid = b["segment_ids"] > 0
    nbytes += int(valid.sum())
    npatches += int((b["patch_starts"][:, :-1] & valid).sum())
  return nbytes / max(npatches, 1)


class _StoredEntropies:
  """encode_fn of precomputed entropies: the store is opened on the first document."""

  def __init__(self, paths: list[str]):
    self._paths, self._store = paths, None

  def __call__(self, doc: bytes) -> dict[str, np.ndarray]:
    if self._store is None:
      self._store = EntropyStore(self._paths)
    return {"inputs": codec.encode(doc), "next_entropies": self._store(doc)}


def entropy_store_paths(pcfg: patching.PatchingConfig) -> list[str]:
  return [os.path.join(pcfg.entropy_store, f"{s}.array_record") for s in ("train", "validation")]


def blt_encode_fn(pcfg: patching.PatchingConfig):
  """Document -> what the packer packs: byte ids, and precomputed entropies if configured."""
  if pcfg.scheme == "entropy" and pcfg.entropies == "precomputed":
    return _StoredEntropies(entropy_store_paths(pcfg))
  return codec.encode


def blt_task(config, **placement) -> Task:
  """A BLT on bytes; `config.patching` says how bytes are grouped into patches (`placement`:
  unused, the entropy model runs on the host's default device)."""
  if config.data.get("tokenizer"):
    raise ValueError(
      f"config.data.tokenizer={config.data.tokenizer!r}: a BLT reads bytes; leave it empty"
    )
  cfg = workdir_lib.model_config(config)
  pcfg = patching.PatchingConfig.from_dict(config.patching)
  if not pcfg.bytes_per_patch:
    raise ValueError(
      "config.patching.bytes_per_patch=0: not measured yet (jaxtok.train.prepare measures it)"
    )
  flops = blt_flops(cfg, config.data.seq_len, pcfg.bytes_per_patch)

  def eval_results(sums: dict[str, float]) -> dict[str, float]:
    return {
      "val_bytes_per_patch": sums["patch_bytes"] / max(sums["patches"], 1.0),
      # Share of validation bytes the training slots would leave without a patch (the
      # evaluation itself has a slot per byte).
      "val_overflow_fraction": sums["overflow_sum"] / max(sums["tokens"], 1.0),
    }

  return Task(
    name=f"blt_{pcfg.scheme}",
    build_model=lambda rngs: BLT(cfg, rngs=rngs),
    loss_fn=blt_loss,
    eval_loss_fn=blt_eval_loss,
    flops=flops,
    encode_fn=blt_encode_fn(pcfg),
    host_transform=BLTBatches(pcfg, cfg),
    eval_results=eval_results,
    extra={
      "patching": pcfg.scheme if pcfg.scheme != "entropy" else f"entropy-{pcfg.rule}",
      "bytes_per_patch": pcfg.bytes_per_patch,
      **{f"flops_per_byte_{k}": v for k, v in flops_by_part(flops).items()},
    },
  )
