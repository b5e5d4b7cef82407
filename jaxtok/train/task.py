"""A Task tells the generic trainer what to build, how to score it and how to feed it.

Building a task has no side effects: it reads the resolved config (and the
files it names: the workdir's tokenizer, an entropy model's workdir, a frozen
base model), never a corpus. Everything that needs the data (training a BPE,
measuring bytes per patch or per token, precomputing entropies) is done once
before, by `jaxtok.train.prepare`, and recorded in the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from flax import nnx

from jaxtok.data import codec
from jaxtok.models.flops import Flops
from jaxtok.train.phases import Phase
from jaxtok.train.steps import LossFn


@dataclasses.dataclass
class Task:
  name: str
  build_model: Callable[[nnx.Rngs], nnx.Module]
  loss_fn: LossFn
  flops: Flops  # forward FLOPs per byte
  encode_fn: Callable[[bytes], np.ndarray] = codec.encode  # document -> ids for packing
  host_transform: Callable[[dict], dict] | None = None  # numpy batch -> model batch (host side)
  # The optimizer updates the model state this filter selects; the rest is frozen (passed to
  # the step, never differentiated): a ZeTT base LM.
  trainable: Any = nnx.Param
  # Checkpointable iterator of host batches from the packed text rows; default: HostBatches.
  wrap_batches: Callable[[Any], Any] | None = None
  # Batch keys that are not split by row (per-step tables): placed replicated on the mesh.
  replicated_keys: tuple[str, ...] = ()
  # (the model's graphdef) -> evaluate(params, *frozen) -> dict, replacing the evaluation
  # of the loss on validation batches.
  make_evaluator: Callable[[Any], Callable[..., dict[str, float]]] | None = None
  phases: list[Phase] | None = None  # None: one "train" phase (or patch-level, if configured)
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # reported in results
  # final validation sums (loss_sum, tokens, bytes and the loss's own) -> more results
  eval_results: Callable[[dict[str, float]], dict[str, Any]] | None = None
  # The loss of validation batches, where it differs from loss_fn (a BLT: no patch overflow).
  eval_loss_fn: LossFn | None = None


class HostBatches:
  """Packed batches + the task's host-side transform; checkpointable like the packer."""

  def __init__(self, it, transform=None):
    self._it, self._transform = it, transform

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self._it)
    return self._transform(batch) if self._transform else batch

  def get_state(self):
    return self._it.get_state()

  def set_state(self, state):
    self._it.set_state(state)
