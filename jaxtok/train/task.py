"""A Task tells the generic trainer what to build, how to score it and how to
feed it: `config.model.name` picks one from the registry.

New model families (BLT, ...) register a builder with `@register_task("name")`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from flax import nnx

from jaxtok.data import codec
from jaxtok.eval.flops import Flops, transformer_config_flops
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.train.losses import lm_loss
from jaxtok.train.steps import LossFn


@dataclasses.dataclass
class Task:
  name: str
  model_config: Any
  build_model: Callable[[nnx.Rngs], nnx.Module]
  loss_fn: LossFn
  flops: Flops  # forward FLOPs per byte
  encode_fn: Callable[[bytes], np.ndarray] = codec.encode  # document -> ids for packing
  host_transform: Callable[[dict], dict] | None = None  # numpy batch -> model batch (host side)
  eval_loss_fn: LossFn | None = None  # defaults to loss_fn
  tokenizer_path: str | None = None  # token-level models: copied into the workdir
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # reported in results


_REGISTRY: dict[str, Callable[[Any], Task]] = {}


def register_task(name: str):
  def deco(fn):
    _REGISTRY[name] = fn
    return fn

  return deco


def get_task(config) -> Task:
  name = config.model.get("name", "transformer")
  if name not in _REGISTRY:
    _import_plugins()
  if name not in _REGISTRY:
    raise ValueError(f"config.model.name={name!r}: unknown; known: {sorted(_REGISTRY)}")
  return _REGISTRY[name](config)


def _import_plugins():
  # Model families register themselves on import; import lazily to keep start-up light.
  import importlib

  for mod in ("jaxtok.models.blt",):
    try:
      importlib.import_module(mod)
    except ModuleNotFoundError as e:
      if e.name != mod:
        raise


@register_task("transformer")
def transformer_task(config) -> Task:
  cfg = TransformerConfig.from_dict(config.model)
  tokens_per_byte = 1.0
  return Task(
    name="transformer",
    model_config=cfg,
    build_model=lambda rngs: Transformer(cfg, rngs=rngs),
    loss_fn=lm_loss,
    flops=transformer_config_flops(cfg, config.data.seq_len).scaled(tokens_per_byte),
  )
