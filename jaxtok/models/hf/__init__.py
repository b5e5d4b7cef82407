"""Checkpoints in the Hugging Face layout: config.json + safetensors (+ tokenizer.json).

  load("hf:org/name" or a directory)  ->  Loaded(kind, model, tokenizer, patching, entropy model)
  save_transformer(model, out, tokenizer=...) / save_blt(model, patching, entropy_model, out)

* `llama`, `mistral`, `qwen2` (SmolLM2 is a `llama`) load as a `Transformer`; a
  Transformer saves as the one of them whose modules compute what it computes;
* `blt` (with its patcher) loads as a `BLT` with the reference switches, its
  `EntropyModel` and `PatchingConfig`; such a BLT saves back.

One module per format (`llama.py`, `blt.py`) holds the config mapping and the
parameter table; `params.py` streams tensors through a table; `tensors.py`
reads and atomically writes the files. Hub ids resolve through
`huggingface_hub`'s cache (`jaxtok.hub`).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tokenizers import AddedToken, Tokenizer

from jaxtok import hub
from jaxtok.models import transfer
from jaxtok.models.blt import BLT
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.hf import blt as blt_format
from jaxtok.models.hf import llama as llama_format
from jaxtok.models.hf import params as params_lib
from jaxtok.models.hf.tensors import CONFIG, HFError, Reader, read_config, write
from jaxtok.models.transformer import Transformer
from jaxtok.patching.config import PatchingConfig
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import load_tokenizer

__all__ = ["HFError", "Loaded", "load", "save_blt", "save_transformer", "fit_vocab"]

TOKENIZER = "tokenizer.json"
GENERATION = "generation_config.json"


@dataclasses.dataclass
class Loaded:
  kind: str  # "transformer" or "blt"
  model: Transformer | BLT
  directory: str
  config: dict  # the config.json
  tokenizer: ByteTokenizer | None = None  # transformers: the directory's tokenizer.json, if any
  patching: PatchingConfig | None = None  # BLT
  entropy_model: EntropyModel | None = None  # BLT with entropy patching


def load(
  spec: str,
  *,
  param_dtype: str = "float32",
  dtype: str = "float32",
  mesh: Mesh | None = None,
  max_patches: int | None = None,
) -> Loaded:
  """A model from a directory or hub id in the Hugging Face layout (`hf:` prefix optional).

  Parameters are read one at a time and placed on `mesh` (sharded by their logical axis
  names) or the default device; `param_dtype` is their dtype in jaxtok, `dtype` the compute
  dtype. A BLT's `max_patches` (patch slots per row) defaults to its max_position_embeddings.
  """
  directory = hub.resolve(spec)
  c = read_config(directory)
  where = os.path.join(directory, CONFIG)
  dt = dict(dtype=dtype, param_dtype=param_dtype)
  with Reader(directory) as reader:
    if c.get("model_type") == "blt":
      cfg, pcfg, em_cfg = blt_format.configs_from_hf(c, where, max_patches=max_patches, **dt)
      model = params_lib.load(
        lambda: BLT(cfg, rngs=nnx.Rngs(0)),
        blt_format.table(cfg),
        reader,
        param_dtype=param_dtype,
        mesh=mesh,
        ignore=lambda n: n.startswith(blt_format.PATCHER),
      )
      em = None
      if em_cfg is not None:
        em_model = params_lib.load(
          lambda: Transformer(em_cfg, rngs=nnx.Rngs(0)),
          blt_format.patcher_table(em_cfg),
          reader,
          param_dtype=param_dtype,
          mesh=mesh,
          ignore=lambda n: not n.startswith(blt_format.PATCHER),
        )
        seq_len = int(c["patcher_config"].get("max_position_embeddings", 8192))
        em = EntropyModel(em_model, seq_len=seq_len, fingerprint=f"hf:{directory}")
      return Loaded("blt", model, directory, c, patching=pcfg, entropy_model=em)
    cfg = llama_format.config_from_hf(c, where, **dt)
    model = params_lib.load(
      lambda: Transformer(cfg, rngs=nnx.Rngs(0)),
      llama_format.table(cfg),
      reader,
      param_dtype=param_dtype,
      mesh=mesh,
      # A tied checkpoint may carry a copy of the embedding as lm_head.weight.
      ignore=lambda n: llama_format.ignored(n) or (cfg.tie_embeddings and n == "lm_head.weight"),
    )
  tok = None
  if os.path.exists(os.path.join(directory, TOKENIZER)):
    tok = load_tokenizer(directory, **_specials(c))
    if tok.hf_size > cfg.vocab_size:
      raise HFError(
        f"{os.path.join(directory, TOKENIZER)} has {tok.hf_size} tokens but the embedding "
        f"model.embed_tokens.weight has {cfg.vocab_size} rows: tokenizer and model do not match"
      )
  return Loaded("transformer", model, directory, c, tokenizer=tok)


def _specials(c: dict) -> dict:
  """bos/eos/pad ids named by config.json (ints only; lists keep the tokenizer's choice)."""
  out = {}
  for k in ("bos", "eos", "pad"):
    v = c.get(f"{k}_token_id")
    if isinstance(v, int):
      out[k] = v
  return out


def fit_vocab(model: Transformer, tok: ByteTokenizer) -> Transformer:
  """`model` with one embedding (and head) row per id of the tokenizer's byte view.

  Rows the byte view adds (bytes or special tokens the tokenizer lacks) get the mean
  embedding, as for GGUF conversions; rows past the view (the padding rows HF checkpoints
  often carry) are dropped: no id of the tokenizer reaches them.
  """
  n = tok.vocab_size
  if n == model.cfg.vocab_size:
    return model

  def fit(table):  # [V, D]
    table = np.asarray(table, np.float32)
    if n < len(table):
      return table[:n]
    return np.concatenate([table, np.repeat(table.mean(0, keepdims=True), n - len(table), 0)])

  emb_in, emb_out = model.embedding_tables()
  cfg = dataclasses.replace(model.cfg, vocab_size=n)
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)
  params = nnx.state(model, nnx.Param)
  params = transfer.with_embeddings(params, fit(emb_in), None if emb_out is None else fit(emb_out))
  return nnx.merge(graphdef, params)


# --- export --------------------------------------------------------------------------------------


def save_transformer(
  model: Transformer, out_dir: str, *, tokenizer: ByteTokenizer | None = None, dtype=None
) -> str:
  """Writes a Transformer (and its tokenizer) as a Llama / Mistral / Qwen2 directory.

  `dtype` ("float32", "bfloat16", ...) converts the weights; default: their own dtype.
  """
  cfg = model.cfg
  if tokenizer is not None and tokenizer.vocab_size != cfg.vocab_size:
    raise HFError(
      f"the tokenizer's byte view has {tokenizer.vocab_size} tokens but the model "
      f"{cfg.vocab_size} embeddings: they must match"
    )
  ids = {}
  if tokenizer is not None:
    ids = dict(bos=tokenizer.bos_id, eos=tokenizer.eos_id, pad=tokenizer.pad_id)
  dname = dtype or model.cfg.param_dtype
  c = llama_format.config_to_hf(cfg, dtype=dname, **ids)
  files = {CONFIG: json.dumps(c, indent=2)}
  if ids:
    gen = {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"]}
    files[GENERATION] = json.dumps(gen, indent=2)
    files[TOKENIZER] = _tokenizer_json(tokenizer)
  tensors = params_lib.tensors(model, llama_format.table(cfg), params_lib.as_dtype(dtype))
  return write(out_dir, tensors, files)


def _tokenizer_json(tok: ByteTokenizer) -> str:
  """The wrapped HF tokenizer, with the tokens the byte view appended added to it, so that
  transformers' tokenizer has the same ids as the model's rows."""
  hf = tok.hf
  extra = tok.names[tok.hf_size :]
  if extra:
    hf = Tokenizer.from_str(tok.hf.to_str())
    for i, name in enumerate(extra, start=tok.hf_size):
      piece = tok.vocab[i]
      content = piece.decode("latin-1") if piece else name
      hf.add_tokens([AddedToken(content, special=not piece, normalized=False)])
    if hf.get_vocab_size() != tok.vocab_size:
      raise HFError(
        f"{tok.name or 'the tokenizer'}: the tokens its byte view appended collide with its "
        "own, so transformers' tokenizer would not have the model's ids"
      )
  return hf.to_str(pretty=True)


def save_blt(
  model: BLT,
  pcfg: PatchingConfig,
  entropy_model: EntropyModel | None,
  out_dir: str,
  *,
  dtype=None,
) -> str:
  """Writes a BLT and its entropy model as a transformers `BltForCausalLM` directory."""
  cfg = model.cfg
  em = entropy_model.model if entropy_model is not None and pcfg.scheme == "entropy" else None
  blt_format.exportable(cfg, pcfg, None if em is None else em.cfg)
  if em is not None and em.cfg.head_size != em.cfg.d_model // em.cfg.n_heads:
    raise HFError("the entropy model's head_dim must be d_model / n_heads for transformers")
  c = blt_format.config_to_hf(
    cfg, pcfg, None if em is None else em.cfg, dtype or model.cfg.param_dtype
  )
  files = {
    CONFIG: json.dumps(c, indent=2),
    GENERATION: json.dumps({"bos_token_id": 1, "eos_token_id": 2}, indent=2),
  }
  cast = params_lib.as_dtype(dtype)

  def stream():
    yield from params_lib.tensors(model, blt_format.table(cfg), cast)
    if em is not None:
      yield from params_lib.tensors(em, blt_format.patcher_table(em.cfg), cast)
      if em.cfg.tie_embeddings:  # the patcher has a head of its own
        emb = em.embed.embedding[...]
        emb = np.asarray(emb if cast is None else emb.astype(cast))
        yield blt_format.PATCHER + "lm_head.weight", emb

  return write(out_dir, stream(), files)
