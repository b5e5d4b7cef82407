"""A Task tells the generic trainer what to build, how to score it and how to
feed it: `config.model.name` picks one from the registry.

New model families (BLT, ...) register a builder with `@register_task("name")`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from flax import nnx

from jaxtok.data import codec, corpora
from jaxtok.eval.flops import Flops, transformer_config_flops
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers import bpe
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
  # final validation sums (loss_sum, tokens, bytes and the loss's own) -> more results
  eval_results: Callable[[dict[str, float]], dict[str, Any]] | None = None


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

  for mod in ("jaxtok.models.blt", "jaxtok.tokenizers.transfer"):
    try:
      importlib.import_module(mod)
    except ModuleNotFoundError as e:
      if e.name != mod:
        raise


def resolve_tokenizer(config) -> str | None:
  """config.data.tokenizer: "" (bytes), "bpe:<vocab>" (trained on the train split) or a path."""
  spec = config.data.get("tokenizer", "")
  if not spec:
    return None
  if spec.startswith("bpe:"):
    try:
      vocab = int(spec[4:])
    except ValueError:
      raise ValueError(f"config.data.tokenizer={spec!r}: expected bpe:<vocab size>") from None
    data_dir = os.path.expanduser(config.data.data_dir or corpora.default_data_dir())
    return bpe.get_or_train(load_train_corpus(config), vocab, os.path.join(data_dir, "tokenizers"))
  if not os.path.exists(spec):
    raise ValueError(f"config.data.tokenizer={spec!r}: no such tokenizer file")
  return spec


def load_train_corpus(config):
  d = config.data
  return corpora.corpus_for(d, "train")


def tokens_per_byte(encode_fn, corpus, max_docs: int = 200) -> float:
  """Average tokens per byte on a sample of the corpus (BOS/EOS excluded)."""
  step = max(1, len(corpus) // max_docs)
  docs = [corpus[i] for i in range(0, len(corpus), step)][:max_docs]
  return sum(len(encode_fn(d)) - 2 for d in docs) / max(1, sum(len(d) for d in docs))


@register_task("transformer")
def transformer_task(config) -> Task:
  """A byte LM, or a token LM when config.data.tokenizer names a tokenizer."""
  tok_path = resolve_tokenizer(config)
  if tok_path is None:
    cfg = TransformerConfig.from_dict(config.model)
    return Task(
      name="transformer",
      model_config=cfg,
      build_model=lambda rngs: Transformer(cfg, rngs=rngs),
      loss_fn=lm_loss,
      flops=transformer_config_flops(cfg, config.data.seq_len),
    )
  tok = bpe.load(tok_path)
  with config.unlocked():
    config.model.vocab_size = tok.get_vocab_size()  # the tokenizer decides the vocab
  cfg = TransformerConfig.from_dict(config.model)
  encode = bpe.make_encoder(tok)
  lengths = bpe.token_byte_lengths(tok)

  def add_target_bytes(batch):
    t = batch["targets"]
    return {**batch, "target_bytes": np.where(t >= 0, lengths[np.maximum(t, 0)], 0)}

  tpb = tokens_per_byte(encode, load_train_corpus(config))
  return Task(
    name="transformer",
    model_config=cfg,
    build_model=lambda rngs: Transformer(cfg, rngs=rngs),
    loss_fn=lm_loss,
    flops=transformer_config_flops(cfg, config.data.seq_len).scaled(tpb),
    encode_fn=encode,
    host_transform=add_target_bytes,
    tokenizer_path=tok_path,
    extra={"tokenizer": os.path.basename(tok_path), "bytes_per_token": 1.0 / tpb},
  )
