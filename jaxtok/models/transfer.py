"""Move a pretrained LM to a new tokenizer: new embeddings, same transformer.

`transfer(...)` writes a jaxtok workdir (config.json, tokenizer.json + its
byte-view sidecar, an orbax checkpoint at step 0) that `jaxtok.restore()`
loads like any trained model: a Transformer whose vocabulary is the target
tokenizer's byte view.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxtok.models import hypernet as hypernet_lib
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.transformer import Transformer
from jaxtok.tokenizers import embedding_init
from jaxtok.tokenizers.byte_view import ByteTokenizer


def with_embeddings(params: nnx.State, emb_in: jax.Array, emb_out: jax.Array | None) -> nnx.State:
  """A Transformer's params with its embedding (and untied head) replaced: another vocab."""
  flat = dict(nnx.to_flat_state(params))
  emb = flat[("embed", "embedding")]
  flat[("embed", "embedding")] = emb.replace(jnp.asarray(emb_in, emb.get_value().dtype))
  if ("head", "kernel") in flat:
    if emb_out is None:
      raise ValueError("the model has an untied output head: pass output embeddings")
    head = flat[("head", "kernel")]
    flat[("head", "kernel")] = head.replace(jnp.asarray(emb_out, head.get_value().dtype).T)
  return nnx.from_flat_state(flat)


def transfer(
  base: Transformer,
  target: ByteTokenizer,
  tables: tuple[np.ndarray, np.ndarray | None],
  out_dir: str,
  *,
  info: dict | None = None,
  seq_len: int = 512,
) -> str:
  """Writes `base` with embedding tables `tables` for `target` as a workdir; returns it."""
  e_in, e_out = tables
  if e_in.shape != (target.vocab_size, base.cfg.d_model):
    raise ValueError(
      f"input embeddings {e_in.shape} do not fit {target.vocab_size} tokens x d={base.cfg.d_model}"
    )
  os.makedirs(out_dir, exist_ok=True)
  tok_path = os.path.abspath(workdir_lib.tokenizer_path(out_dir))
  target.save(tok_path)
  _, params = nnx.split(base, nnx.Param)
  params = with_embeddings(params, e_in, None if base.cfg.tie_embeddings else e_out)
  cfg = dataclasses.replace(base.cfg, vocab_size=target.vocab_size)
  config = ml_collections.ConfigDict(
    {
      "model": {**dataclasses.asdict(cfg), "name": "transformer"},
      "data": {"tokenizer": tok_path, "tokenizer_file": tok_path, "seq_len": seq_len},
      "transfer": dict(info or {}),
    }
  )
  with open(os.path.join(out_dir, workdir_lib.CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  ckpt = workdir_lib.checkpointer(out_dir, async_save=False)
  try:
    ckpt.save(0, {"params": params})
  finally:
    ckpt.close()
  return out_dir


def transfer_with(
  method: str,
  base: Transformer,
  base_tok: ByteTokenizer,
  target: ByteTokenizer,
  out_dir: str,
  *,
  hypernet=None,
  texts=(),
) -> str:
  """`transfer` with embeddings from one of embedding_init.METHODS."""
  emb = embedding_init.BaseEmbeddings(base_tok, *base.embedding_tables())
  if method == "hypernet":
    if hypernet is None:
      raise ValueError("method 'hypernet' needs a trained hypernetwork")
    predict = hypernet_lib.predictor(hypernet, emb.emb_in, emb.emb_out)
    cfg = hypernet.cfg
    tables = embedding_init.hypernet_init(
      target, emb, predict, cfg.max_len, copy_shared=cfg.copy_shared
    )
  elif method == "fvt":
    tables = embedding_init.fvt_init(target, emb)
  elif method == "focus":
    tables = embedding_init.focus_init(target, emb, list(texts))
  elif method == "lexical":
    tables = embedding_init.lexical_init(target, emb)
  elif method == "random":
    tables = embedding_init.random_init(target, emb)
  else:
    raise ValueError(f"unknown init method {method!r}; one of {embedding_init.METHODS}")
  info = {"method": method, "target": target.name, "base_tokenizer": base_tok.name}
  return transfer(base, target, tables, out_dir, info=info)
