"""Move a pretrained LM to a new tokenizer: new embeddings, same transformer.

`transfer(...)` writes a jaxtok workdir (config.json, tokenizer.json + its
byte-view sidecar, an orbax checkpoint at step 0) that `jaxtok.restore()`
loads like any trained model: the task "zett_lm" registered here builds a
Transformer for the target vocabulary and encodes text with the target
tokenizer. `generate_text` decodes from such a model with its KV cache.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxtok.eval import transfer as transfer_eval
from jaxtok.eval.flops import transformer_config_flops
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers import embedding_init
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.train import checkpoint as ckpt_lib
from jaxtok.train.losses import lm_loss
from jaxtok.train.task import Task, register_task

TASK = "zett_lm"


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
  tok_path = os.path.join(os.path.abspath(out_dir), "tokenizer.json")
  target.save(tok_path)
  _, params = nnx.split(base, nnx.Param)
  params = transfer_eval.with_embeddings(params, e_in, None if base.cfg.tie_embeddings else e_out)
  cfg = dataclasses.replace(base.cfg, vocab_size=target.vocab_size)
  config = ml_collections.ConfigDict(
    {
      "model": {**dataclasses.asdict(cfg), "name": TASK},
      "data": {"tokenizer": tok_path, "seq_len": seq_len},
      "transfer": dict(info or {}),
    }
  )
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  ckpt = ckpt_lib.Checkpointer(os.path.join(out_dir, "checkpoints"), async_save=False)
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
  emb = embedding_init.BaseEmbeddings(base_tok, base.embed.embedding.value, _out_table(base))
  if method == "hypernet":
    if hypernet is None:
      raise ValueError("method 'hypernet' needs a trained hypernetwork")
    tables = embedding_init.hypernet_init(target, emb, hypernet)
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


def _out_table(base: Transformer):
  return None if base.cfg.tie_embeddings else base.head.kernel.value.T


@register_task(TASK)
def zett_lm_task(config) -> Task:
  """A Transformer whose vocabulary is a (transferred) tokenizer's byte view."""
  tok = load_tokenizer(config.data.tokenizer)
  model = dict(config.model)
  model["vocab_size"] = tok.vocab_size
  cfg = TransformerConfig.from_dict(model)
  lengths = tok.lengths

  def add_target_bytes(batch):
    t = batch["targets"]
    return {**batch, "target_bytes": np.where(t >= 0, lengths[np.maximum(t, 0)], 0)}

  bpt = float(config.get("transfer", {}).get("bytes_per_token", 0) or 0) or 1.0
  return Task(
    name=TASK,
    model_config=cfg,
    build_model=lambda rngs: Transformer(cfg, rngs=rngs),
    loss_fn=lm_loss,
    flops=transformer_config_flops(cfg, config.data.seq_len).scaled(1.0 / bpt),
    encode_fn=tok.make_encoder(),
    host_transform=add_target_bytes,
    tokenizer_path=config.data.tokenizer,
    extra={"tokenizer": tok.name},
  )


def generate_text(
  model: Transformer,
  tok: ByteTokenizer,
  prompt: bytes | str,
  *,
  max_new_tokens: int = 32,
  temperature: float = 0.0,
  seed: int = 0,
) -> bytes:
  """Continues `prompt` with the model's KV cache: greedy (temperature 0) or sampled."""
  ids = np.concatenate([[tok.bos_id], tok.encode(prompt)]).astype(np.int32)
  graphdef, state = nnx.split(model)

  @jax.jit
  def step(state, tokens, cache):
    return nnx.merge(graphdef, state).decode(tokens, cache)

  cache = model.init_cache(1, len(ids) + max_new_tokens)
  logits, cache = step(state, jnp.asarray(ids)[None], cache)
  rng = np.random.default_rng(seed)
  out: list[int] = []
  for _ in range(max_new_tokens):
    last = np.asarray(logits[0, -1], np.float64)
    last[tok.lengths == 0] = -np.inf  # no pad/bos/unk; eos is handled below
    last[tok.eos_id] = np.asarray(logits[0, -1])[tok.eos_id]
    if temperature > 0:
      p = np.exp((last - last.max()) / temperature)
      nxt = int(rng.choice(len(p), p=p / p.sum()))
    else:
      nxt = int(np.argmax(last))
    if nxt == tok.eos_id:
      break
    out.append(nxt)
    logits, cache = step(state, jnp.asarray([[nxt]], jnp.int32), cache)
  return tok.decode(out)


def read_info(workdir: str) -> dict:
  with open(os.path.join(workdir, "config.json")) as f:
    return json.load(f).get("transfer", {})


def load_base_spec(spec: str) -> tuple[Transformer, ByteTokenizer]:
  """A base LM from a jaxtok workdir or a GGUF ("smollm2" or a path)."""
  from jaxtok.tokenizers import sources
  from jaxtok.train import trainer

  if os.path.isdir(os.path.expanduser(spec)):
    model, _ = trainer.restore(os.path.expanduser(spec))
    return model, load_tokenizer(os.path.join(os.path.expanduser(spec), "tokenizer.json"))
  from jaxtok.models.convert import load_gguf_model

  return load_gguf_model(sources.resolve_gguf(spec))


def run(*, base: str, hypernet: str, tokenizer: str, out: str, method: str, prompt: str) -> dict:
  """The `experiments.transfer` job: transfer, reload with restore(), generate from a prompt."""
  from jaxtok.eval.zett_compare import make_target, text_source
  from jaxtok.train import trainer, zett

  config = trainer.load_config(hypernet) if hypernet else None
  if base:
    model, base_tok = load_base_spec(base)
  elif config is not None:
    model, base_tok = zett.load_base(config)
  else:
    raise ValueError("pass --base (a jaxtok workdir or GGUF) or --hypernet (its base is used)")
  hyper = zett.restore_hypernet(hypernet, model)[0] if hypernet and method == "hypernet" else None
  target = make_target(tokenizer, config)
  texts = ()
  if method == "focus":
    if config is None:
      raise ValueError("method 'focus' needs --hypernet (its config names the text to use)")
    texts = text_source(config.data.name, "train", config, max_docs=200, doc_bytes=1 << 16)
  transfer_with(method, model, base_tok, target, out, hypernet=hyper, texts=texts)
  restored, _ = trainer.restore(out)
  print(f"wrote {out}: {target.vocab_size} tokens ({target.name}), embeddings from {method}")
  result = {"out": out, "vocab": target.vocab_size, "method": method}
  if prompt:
    text = generate_text(restored, load_tokenizer(os.path.join(out, "tokenizer.json")), prompt)
    print(f"generation check: {prompt!r} -> {text.decode('utf-8', errors='replace')!r}")
    result["generated"] = text
  return result
