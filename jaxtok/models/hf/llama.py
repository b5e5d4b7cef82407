"""Llama-family causal LMs (Llama, Mistral, Qwen2; SmolLM2 is a Llama) <-> jaxtok `Transformer`.

The Hugging Face modules differ from jaxtok's Transformer only in names and
layouts: torch weights are [out, in]; RoPE rotates the halves (x[i], x[i+D/2])
of each head ("half", jaxtok's `rope_layout="half"`, so imports need no
permutation). Export writes the model type whose modules compute what the
jaxtok model computes: Qwen2 if it has q/k/v biases, Mistral if it has a
sliding window, else Llama; models with interleaved RoPE (jaxtok-trained, GGUF
conversions) get their q/k output columns permuted into the half layout, which
leaves every attention score unchanged.

Llama 3.1's RoPE scaling (`rope_type` "llama3") is supported. Not supported (a
clear error, not a silently different model): other RoPE scalings (linear,
dynamic, yarn, ...), biases on the output projection or the MLP, per-layer
sliding windows, activations other than SiLU, Gemma (its norms, embedding scale
and activation differ).
"""

from __future__ import annotations

import numpy as np

from jaxtok.models.hf.params import Table, Tensor, block_table, linear, prefixed
from jaxtok.models.hf.tensors import HFError
from jaxtok.models.transformer import TransformerConfig

ARCHITECTURES = {
  "llama": "LlamaForCausalLM",
  "mistral": "MistralForCausalLM",
  "qwen2": "Qwen2ForCausalLM",
}


def _rope(c: dict) -> dict:
  """transformers 5's `rope_parameters`, or the older `rope_theta` + `rope_scaling`."""
  rope = dict(c.get("rope_scaling") or {})
  rope.update(c.get("rope_parameters") or {})
  rope.setdefault("rope_theta", c.get("rope_theta", 10000.0))
  rope.setdefault("rope_type", rope.get("type", "default"))
  return rope


def rope_theta(c: dict, where: str, allow=("default",)) -> float:
  """The RoPE base of an HF config; refuses RoPE types other than `allow`."""
  rope = _rope(c)
  if rope["rope_type"] not in allow:
    raise HFError(
      f"{where}: rope_type {rope['rope_type']!r} is not supported, only {', '.join(allow)}"
    )
  return float(rope["rope_theta"])


def rope_scaling(c: dict) -> tuple | None:
  """Llama 3.1's (factor, low_freq_factor, high_freq_factor, original context), or None."""
  r = _rope(c)
  if r["rope_type"] != "llama3":
    return None
  keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
  return tuple(float(r[k]) for k in keys)


def _need(ok: bool, where: str, what: str) -> None:
  if not ok:
    raise HFError(f"{where}: {what}")


def config_from_hf(c: dict, where: str, *, dtype="float32", param_dtype="float32"):
  """TransformerConfig of a Llama-family config.json (`where` names it in errors)."""
  kind = c.get("model_type")
  _need(
    kind in ARCHITECTURES,
    where,
    f"model_type {kind!r} is not a supported causal LM; supported: {sorted(ARCHITECTURES)} "
    "and 'blt'",
  )
  _need(
    c.get("hidden_act", "silu") == "silu", where, f"hidden_act {c.get('hidden_act')!r}: only silu"
  )
  _need(not c.get("attention_bias") and not c.get("mlp_bias"), where, "attention_bias / mlp_bias")
  d, n = int(c["hidden_size"]), int(c["num_attention_heads"])
  window = None
  if kind == "mistral":
    window = c.get("sliding_window")
  elif kind == "qwen2":
    types = set(c.get("layer_types") or ["full_attention"])
    _need(len(types) == 1, where, f"layer_types mix {sorted(types)}: per-layer windows")
    if types == {"sliding_attention"}:
      window = c.get("sliding_window")
  return TransformerConfig(
    vocab_size=int(c["vocab_size"]),
    d_model=d,
    n_layers=int(c["num_hidden_layers"]),
    n_heads=n,
    n_kv_heads=int(c.get("num_key_value_heads") or n),
    head_dim=int(c.get("head_dim") or d // n),
    qkv_bias=kind == "qwen2",
    mlp_dim=int(c["intermediate_size"]),
    rope_theta=rope_theta(c, where, allow=("default", "llama3")),
    rope_scaling=rope_scaling(c),
    rope_layout="half",
    sliding_window=None if window is None else int(window),
    norm_eps=float(c.get("rms_norm_eps", 1e-6)),
    tie_embeddings=bool(c.get("tie_word_embeddings", False)),
    dtype=dtype,
    param_dtype=param_dtype,
  )


def model_type(cfg: TransformerConfig) -> str:
  """The HF model type that computes what `cfg` computes."""
  if cfg.qkv_bias:
    if cfg.sliding_window is not None:
      raise HFError("a model with q/k/v biases (Qwen2) and a sliding window cannot be exported")
    if cfg.head_dim not in (None, cfg.d_model // cfg.n_heads):
      raise HFError("Qwen2 (q/k/v biases) needs head_dim = d_model / n_heads")
    return "qwen2"
  return "mistral" if cfg.sliding_window is not None else "llama"


def config_to_hf(cfg: TransformerConfig, *, bos=None, eos=None, pad=None, dtype="float32") -> dict:
  kind = model_type(cfg)
  c = {
    "architectures": [ARCHITECTURES[kind]],
    "model_type": kind,
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.d_model,
    "intermediate_size": cfg.hidden_dim,
    "num_hidden_layers": cfg.n_layers,
    "num_attention_heads": cfg.n_heads,
    "num_key_value_heads": cfg.num_kv_heads,
    "head_dim": cfg.head_size,
    "hidden_act": "silu",
    "rms_norm_eps": cfg.norm_eps,
    "rope_parameters": _rope_parameters(cfg),
    "tie_word_embeddings": cfg.tie_embeddings,
    "max_position_embeddings": 32768,
    "bos_token_id": bos,
    "eos_token_id": eos,
    "pad_token_id": pad,
    "dtype": dtype,
  }
  if kind == "mistral":
    c["sliding_window"] = cfg.sliding_window
  if kind == "qwen2":
    c.update(
      use_sliding_window=False, sliding_window=None, layer_types=["full_attention"] * cfg.n_layers
    )
    del c["head_dim"]
  return c


def _rope_parameters(cfg: TransformerConfig) -> dict:
  if cfg.rope_scaling is None:
    return {"rope_type": "default", "rope_theta": cfg.rope_theta}
  factor, low, high, context = cfg.rope_scaling
  return {
    "rope_type": "llama3",
    "rope_theta": cfg.rope_theta,
    "factor": factor,
    "low_freq_factor": low,
    "high_freq_factor": high,
    "original_max_position_embeddings": int(context),
  }


def half_layout(n_heads: int, head_dim: int) -> np.ndarray:
  """Columns of interleaved-RoPE heads reordered into the half layout: HF column r holds
  jaxtok column perm[r] (pair i = (2i, 2i+1) becomes (i, i + D/2))."""
  half = np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])
  return (np.arange(n_heads)[:, None] * head_dim + half[None]).reshape(-1)


def transformer_table(
  cfg: TransformerConfig, *, embed: str, layers: str, norm: str, head: str, hf_rope: str
) -> Table:
  """Names of a Transformer's tensors under the given HF prefixes; q/k columns are permuted
  when the HF modules rotate pairs in another layout (`hf_rope`) than the model."""
  q_perm = k_perm = None
  if cfg.rope_layout != hf_rope:
    q_perm = half_layout(cfg.n_heads, cfg.head_size)
    k_perm = half_layout(cfg.num_kv_heads, cfg.head_size)
  t: Table = {
    ("embed", "embedding"): Tensor(embed),
    ("final_norm", "scale"): Tensor(norm),
    **prefixed(
      ("blocks",),
      block_table(layers, cfg.n_layers, qkv_bias=cfg.qkv_bias, q_perm=q_perm, k_perm=k_perm),
    ),
  }
  if not cfg.tie_embeddings:
    t[("head", "kernel")] = linear(head)
  return t


def table(cfg: TransformerConfig) -> Table:
  return transformer_table(
    cfg,
    embed="model.embed_tokens.weight",
    layers="model.layers",
    norm="model.norm.weight",
    head="lm_head.weight",
    hf_rope="half",
  )


def ignored(name: str) -> bool:
  """Tensors of older checkpoints that are recomputed, not learned."""
  return name.endswith("rotary_emb.inv_freq")
