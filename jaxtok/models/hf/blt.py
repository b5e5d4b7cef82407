"""Byte Latent Transformers in the Hugging Face layout (`BltForCausalLM`) <-> jaxtok `BLT`.

An HF BLT checkpoint holds the model and its entropy model ("patcher") in one
set of safetensors. Its modules compute what jaxtok's BLT computes with the
reference switches of `jaxtok.models.reference` (each cross-attention 2x + O,
no final norm after the latent transformer; RoPE on adjacent pairs, hash
n-gram tables in jaxtok's order) and BLT's global entropy rule; the patcher is
a byte-level Transformer (sliding window, interleaved RoPE).

Configurations jaxtok's BLT cannot express are refused with the field named:
different widths, heads, FFN widths, norms or RoPE bases for the local encoder
and decoder, grouped kv heads in the local models, an encoder whose
cross-attention follows every one of several layers (transformers re-pools the
queries at every layer, the reference carries them), tied embeddings.
"""

from __future__ import annotations

from jaxtok.data.codec import VOCAB_SIZE
from jaxtok.data.hashing import PRIMES
from jaxtok.models import reference
from jaxtok.models.blt import BLTConfig
from jaxtok.models.hf.llama import rope_theta, transformer_table
from jaxtok.models.hf.params import Table, Tensor, block_table, linear, prefixed
from jaxtok.models.hf.tensors import HFError
from jaxtok.models.transformer import TransformerConfig
from jaxtok.patching.config import PatchingConfig

PATCHER = "model.patcher."


def _sub(c: dict, key: str, where: str) -> dict:
  sub = c.get(key)
  if not isinstance(sub, dict):
    raise HFError(f"{where}: a BLT config needs {key}")
  return sub


def _same(where: str, what: str, **values) -> object:
  if len(set(values.values())) != 1:
    got = ", ".join(f"{k}={v}" for k, v in values.items())
    raise HFError(f"{where}: jaxtok's BLT has one {what} for these, got {got}")
  return next(iter(values.values()))


def configs_from_hf(
  c: dict, where: str, *, max_patches=None, dtype="float32", param_dtype="float32"
):
  """(BLTConfig, PatchingConfig, entropy-model TransformerConfig or None) of an HF BLT config."""
  if c.get("model_type") != "blt":
    raise HFError(f"{where}: model_type {c.get('model_type')!r} is not 'blt'")
  enc, dec, glob = (
    _sub(c, k, where) for k in ("encoder_config", "decoder_config", "global_config")
  )
  if c.get("tie_word_embeddings"):
    raise HFError(f"{where}: tie_word_embeddings: a BLT's byte embedding and head are separate")
  if int(c.get("vocab_size", VOCAB_SIZE)) != VOCAB_SIZE:
    raise HFError(
      f"{where}: vocab_size {c.get('vocab_size')}: BLT's byte vocabulary is {VOCAB_SIZE}"
    )
  for name, sub in (("encoder_config", enc), ("decoder_config", dec), ("global_config", glob)):
    if sub.get("hidden_act", "silu") != "silu":
      raise HFError(f"{where}: {name}.hidden_act {sub.get('hidden_act')!r}: only silu")
  d_local = _same(where, "width", encoder=enc["hidden_size"], decoder=dec["hidden_size"])
  heads = _same(
    where, "head count", encoder=enc["num_attention_heads"], decoder=dec["num_attention_heads"]
  )
  for name, sub in (("encoder_config", enc), ("decoder_config", dec)):
    if (sub.get("num_key_value_heads") or heads) != heads:
      raise HFError(
        f"{where}: {name}.num_key_value_heads: the local models have no grouped kv heads"
      )
  mlp_local = _same(
    where, "FFN width", encoder=enc["intermediate_size"], decoder=dec["intermediate_size"]
  )
  eps = _same(
    where,
    "rms_norm_eps",
    encoder=enc["rms_norm_eps"],
    decoder=dec["rms_norm_eps"],
    global_=glob["rms_norm_eps"],
  )
  theta = _same(
    where,
    "RoPE base",
    encoder=rope_theta(enc, where),
    decoder=rope_theta(dec, where),
    global_=rope_theta(glob, where),
  )
  k = int(c.get("cross_attn_k", 2))
  _same(
    where,
    "cross_attn_k",
    model=k,
    encoder=enc.get("cross_attn_k", k),
    decoder=dec.get("cross_attn_k", k),
  )
  d_global = int(glob["hidden_size"])
  if int(dec.get("hidden_size_global", d_global)) != d_global:
    raise HFError(
      f"{where}: decoder_config.hidden_size_global differs from global_config.hidden_size"
    )
  enc_all = bool(enc.get("cross_attn_all_layers", False))
  if enc_all and int(enc["num_hidden_layers"]) > 1:
    raise HFError(
      f"{where}: encoder_config.cross_attn_all_layers with several encoder layers: transformers "
      "re-pools the patch queries at every layer, jaxtok (like the reference) carries them"
    )
  sizes = tuple(int(n) for n in (c.get("encoder_hash_byte_group_size") or [3, 4, 5, 6, 7, 8]))
  n_fn = int(c.get("encoder_hash_byte_group_nb_functions", 1))
  if n_fn > len(PRIMES):
    raise HFError(f"{where}: encoder_hash_byte_group_nb_functions {n_fn} > {len(PRIMES)} primes")
  window = c.get("local_attention_window_len")
  ref = reference.model_settings()
  cfg = BLTConfig(
    d_local=int(d_local),
    d_global=d_global,
    n_layers_encoder=int(enc["num_hidden_layers"]),
    n_layers_global=int(glob["num_hidden_layers"]),
    n_layers_decoder=int(dec["num_hidden_layers"]),
    n_heads_local=int(heads),
    n_heads_global=int(glob["num_attention_heads"]),
    n_kv_heads_global=int(glob.get("num_key_value_heads") or glob["num_attention_heads"]),
    mlp_dim_local=int(mlp_local),
    mlp_dim_global=int(glob["intermediate_size"]),
    local_window=None if window is None else int(window),
    cross_attn_k=k,
    cross_attn_heads=int(heads),
    cross_attn_all_layers_encoder=enc_all,
    cross_attn_all_layers_decoder=bool(dec.get("cross_attn_all_layers", True)),
    hash_vocab=int(c.get("encoder_hash_byte_group_vocab", 500002)),
    hash_ngram_sizes=sizes,
    hash_functions=n_fn,
    rope_theta=float(theta),
    norm_eps=float(eps),
    dtype=dtype,
    param_dtype=param_dtype,
    max_patches=int(max_patches or c.get("max_position_embeddings", 4096)),
    lookahead=True,
    **ref,
  )
  pcfg, em_cfg = _patching(c, where, dtype=dtype, param_dtype=param_dtype)
  return cfg, pcfg, em_cfg


def _patching(c: dict, where: str, **dtypes):
  """transformers patches by the patcher's entropies with the global rule, or (any other mode,
  or no patcher in the forward) into one-byte patches."""
  if c.get("patching_mode") != "entropy" or not c.get("patch_in_forward", True):
    return PatchingConfig(scheme="static", patch_size=1, max_patch_length=0), None
  p = _sub(c, "patcher_config", where)
  d, n = int(p["hidden_size"]), int(p["num_attention_heads"])
  em = TransformerConfig(
    vocab_size=VOCAB_SIZE,
    d_model=d,
    n_layers=int(p["num_hidden_layers"]),
    n_heads=n,
    n_kv_heads=int(p.get("num_key_value_heads") or n),
    head_dim=d // n,
    mlp_dim=int(p["intermediate_size"]),
    rope_theta=rope_theta(p, where),
    rope_layout="interleaved",
    sliding_window=None if p.get("sliding_window") is None else int(p["sliding_window"]),
    norm_eps=float(p.get("rms_norm_eps", 1e-5)),
    **dtypes,
  )
  pcfg = PatchingConfig(
    scheme="entropy",
    rule="global",
    threshold=float(c.get("patching_threshold", 1.335442066192627)),
    max_patch_length=int(c.get("max_patch_length") or 0),
    entropy_model_workdir=where,  # informational: the entropy model comes with the checkpoint
  )
  return pcfg, em


def _cross_table(prefix: str, n: int) -> Table:
  p = prefix + ".{i}."
  return {
    ("q_norm", "scale"): Tensor(p + "q_norm.weight", layers=n),
    ("kv_norm", "scale"): Tensor(p + "k_norm.weight", layers=n),
    ("wq", "kernel"): linear(p + "q_proj.weight", n),
    ("wk", "kernel"): linear(p + "k_proj.weight", n),
    ("wv", "kernel"): linear(p + "v_proj.weight", n),
    ("wo", "kernel"): linear(p + "o_proj.weight", n),
  }


def table(cfg: BLTConfig) -> Table:
  """HF names of a BLT's tensors (the patcher's are in `patcher_table`)."""
  e, d = "model.local_encoder", "model.local_decoder"
  t: Table = {
    ("encoder", "embed", "embedding"): Tensor(e + ".embed_tokens.weight"),
    **prefixed(("encoder", "blocks"), block_table(e + ".layers", cfg.n_layers_encoder)),
    **prefixed(
      ("encoder", "cross"), _cross_table(e + ".cross_attn_layers", len(cfg.encoder_cross_layers))
    ),
    ("encoder", "pool_proj", "kernel"): linear(e + ".patch_embedding_projection.weight"),
    **prefixed(
      ("latent", "blocks"), block_table("model.global_transformer.layers", cfg.n_layers_global)
    ),
    ("decoder", "latent_proj", "kernel"): linear(d + ".patch_embedding_projection.weight"),
    **prefixed(
      ("decoder", "cross"), _cross_table(d + ".cross_attn_layers", len(cfg.decoder_cross_layers))
    ),
    **prefixed(("decoder", "blocks"), block_table(d + ".layers", cfg.n_layers_decoder)),
    ("decoder", "norm", "scale"): Tensor(d + ".norm.weight"),
    ("decoder", "head", "kernel"): linear("lm_head.weight"),
  }
  if cfg.n_hash_tables:
    t[("encoder", "hash_embed", "embedding")] = Tensor("model.encoder_hash_tok_embedding.weight")
  if cfg.cross_attn_k * cfg.d_local != cfg.d_global:
    t[("to_global", "kernel")] = linear(
      "model.global_transformer.token_embedding_projection.weight"
    )
  if cfg.latent_final_norm:  # never in an HF checkpoint: export refuses such models
    t[("latent", "final_norm", "scale")] = Tensor("model.global_transformer.norm.weight")
  return t


def patcher_table(cfg: TransformerConfig) -> Table:
  return transformer_table(
    cfg,
    embed=PATCHER + "embed_tokens.weight",
    layers=PATCHER + "layers",
    norm=PATCHER + "norm.weight",
    head=PATCHER + "lm_head.weight",
    hf_rope="interleaved",
  )


def exportable(cfg: BLTConfig, pcfg: PatchingConfig, em_cfg: TransformerConfig | None) -> None:
  """Raises HFError naming the first setting the HF BLT cannot reproduce."""
  problems = reference.export_problems(cfg)
  if cfg.n_layers_encoder > 1 and cfg.cross_attn_all_layers_encoder:
    problems.append("cross_attn_all_layers_encoder with several encoder layers")
  if cfg.cross_attn_heads != cfg.n_heads_local:
    problems.append("cross_attn_heads != n_heads_local")
  if cfg.hash_vocab and cfg.hash_functions > len(PRIMES):
    problems.append("hash_functions > 11")
  if pcfg.scheme == "entropy":
    if pcfg.rule != "global":
      problems.append(f"patching.rule={pcfg.rule!r} (transformers has the global rule only)")
    if em_cfg is None:
      problems.append("the entropy model is missing")
    elif em_cfg.vocab_size != VOCAB_SIZE or em_cfg.rope_scaling is not None:
      problems.append("the entropy model is not a byte LM with plain RoPE")
  elif not (pcfg.scheme == "static" and pcfg.patch_size == 1 and not pcfg.max_patch_length):
    problems.append(
      f"patching.scheme={pcfg.scheme!r}: transformers patches by entropy, or one byte per patch"
    )
  if problems:
    raise HFError(
      "this BLT cannot be written as a transformers BltForCausalLM: " + "; ".join(problems)
    )


def config_to_hf(
  cfg: BLTConfig, pcfg: PatchingConfig, em_cfg: TransformerConfig | None, dtype="float32"
) -> dict:
  rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  lcfg, gcfg = cfg.local_config(1), cfg.global_config()
  local = dict(
    hidden_size=cfg.d_local,
    num_attention_heads=cfg.n_heads_local,
    num_key_value_heads=cfg.n_heads_local,
    intermediate_size=lcfg.hidden_dim,
    rms_norm_eps=cfg.norm_eps,
    rope_parameters=rope,
    hidden_act="silu",
    cross_attn_k=cfg.cross_attn_k,
    hidden_size_global=cfg.d_global,
    vocab_size=VOCAB_SIZE,
  )
  c = {
    "architectures": ["BltForCausalLM"],
    "model_type": "blt",
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": cfg.max_patches,
    "cross_attn_k": cfg.cross_attn_k,
    "local_attention_window_len": cfg.local_window,
    "encoder_hash_byte_group_size": list(cfg.hash_ngram_sizes) if cfg.hash_vocab else [],
    "encoder_hash_byte_group_vocab": cfg.hash_vocab,
    "encoder_hash_byte_group_nb_functions": cfg.hash_functions,
    "rope_parameters": rope,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "dtype": dtype,
    "encoder_config": dict(
      local,
      num_hidden_layers=cfg.n_layers_encoder,
      cross_attn_all_layers=cfg.cross_attn_all_layers_encoder,
      sliding_window=cfg.local_window,
    ),
    "decoder_config": dict(
      local,
      num_hidden_layers=cfg.n_layers_decoder,
      cross_attn_all_layers=cfg.cross_attn_all_layers_decoder,
    ),
    "global_config": dict(
      hidden_size=cfg.d_global,
      num_attention_heads=cfg.n_heads_global,
      num_key_value_heads=gcfg.num_kv_heads,
      num_hidden_layers=cfg.n_layers_global,
      intermediate_size=gcfg.hidden_dim,
      rms_norm_eps=cfg.norm_eps,
      rope_parameters=rope,
      hidden_act="silu",
    ),
  }
  if pcfg.scheme == "entropy":
    c.update(
      patch_in_forward=True,
      patching_mode="entropy",
      patching_threshold=pcfg.threshold,
      max_patch_length=pcfg.max_patch_length or None,
      patcher_config=dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=em_cfg.d_model,
        num_hidden_layers=em_cfg.n_layers,
        num_attention_heads=em_cfg.n_heads,
        num_key_value_heads=em_cfg.num_kv_heads,
        intermediate_size=em_cfg.hidden_dim,
        rms_norm_eps=em_cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": em_cfg.rope_theta},
        sliding_window=em_cfg.sliding_window,
      ),
    )
  else:
    c.update(patch_in_forward=False, patching_mode="byte", max_patch_length=None)
  return c
