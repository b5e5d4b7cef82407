"""Convert pretrained Llama-architecture GGUF models into jaxtok's Transformer.

GGUF (llama.cpp) stores every matrix as [out, in] rows, fastest dimension
first, which numpy reads as [out, in]: jaxtok's `Linear` kernels are [in, out],
so each is transposed, and the tensors of the L layers are stacked into one
[L, ...] array, as the Transformer holds them (`jaxtok.nn.stack`). llama.cpp's
converter permutes the rows of Q and K so that RoPE rotates adjacent pairs
(x[2i], x[2i+1]); that is jaxtok's `rope_layout="interleaved"`, so no
permutation is undone here. Tied models (no `output.weight`) use the token
embedding as the output head.
"""

from __future__ import annotations

import dataclasses
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok.models.transformer import DTYPES, Transformer, TransformerConfig
from jaxtok.tokenizers import gguf_file
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import load_tokenizer


class ConversionError(ValueError):
  """A GGUF model this converter cannot turn into a jaxtok Transformer."""


def gguf_config(meta: dict, *, dtype: str = "float32", param_dtype: str = "float32"):
  """TransformerConfig from the `llama.*` metadata of a GGUF file."""
  arch = meta.get("general.architecture")
  if arch != "llama":
    raise ConversionError(f"GGUF architecture {arch!r} is not supported (only 'llama')")

  def get(key, default=None):
    v = meta.get(f"llama.{key}", default)
    if v is None:
      raise ConversionError(f"GGUF metadata lacks llama.{key}")
    return v

  d, n_heads = int(get("embedding_length")), int(get("attention.head_count"))
  vocab = meta.get("llama.vocab_size") or len(meta.get("tokenizer.ggml.tokens", []))
  return TransformerConfig(
    vocab_size=int(vocab),
    d_model=d,
    n_layers=int(get("block_count")),
    n_heads=n_heads,
    n_kv_heads=int(get("attention.head_count_kv", n_heads)),
    head_dim=int(get("rope.dimension_count", d // n_heads)),
    mlp_dim=int(get("feed_forward_length")),
    rope_theta=float(get("rope.freq_base", 10000.0)),
    rope_layout="interleaved",
    norm_eps=float(get("attention.layer_norm_rms_epsilon")),
    tie_embeddings="output.weight" not in meta.get("_tensors", ()),
    dtype=dtype,
    param_dtype=param_dtype,
  )


def gguf_params(f: gguf_file.GGUFFile, cfg: TransformerConfig) -> dict:
  """{path tuple: float32 array} in the layout of jaxtok's Transformer parameters."""
  t = f.tensor
  out = {
    ("embed", "embedding"): t("token_embd.weight"),
    ("final_norm", "scale"): t("output_norm.weight"),
  }
  if not cfg.tie_embeddings:
    out[("head", "kernel")] = t("output.weight").T
  names = {
    ("attn_norm", "scale"): ("attn_norm", False),
    ("attn", "wq", "kernel"): ("attn_q", True),
    ("attn", "wk", "kernel"): ("attn_k", True),
    ("attn", "wv", "kernel"): ("attn_v", True),
    ("attn", "wo", "kernel"): ("attn_output", True),
    ("mlp_norm", "scale"): ("ffn_norm", False),
    ("mlp", "gate", "kernel"): ("ffn_gate", True),
    ("mlp", "up", "kernel"): ("ffn_up", True),
    ("mlp", "down", "kernel"): ("ffn_down", True),
  }
  for path, (name, transpose) in names.items():
    layers = [t(f"blk.{i}.{name}.weight") for i in range(cfg.n_layers)]
    out[("blocks", *path)] = np.stack([w.T if transpose else w for w in layers])  # [L, ...]
  return out


def load_gguf_model(
  path: str, *, dtype: str = "float32", param_dtype: str = "float32"
) -> tuple[Transformer, ByteTokenizer]:
  """(Transformer with the GGUF weights, its tokenizer seen at byte level)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"GGUF model {path} does not exist")
  tok = load_tokenizer(path)
  f = gguf_file.GGUFFile(path)
  try:
    cfg = gguf_config({**f.metadata, "_tensors": f.tensors}, dtype=dtype, param_dtype=param_dtype)
    arrays = gguf_params(f, cfg)
  finally:
    f.close()
  if tok.vocab_size > cfg.vocab_size:
    # Bytes the tokenizer cannot spell (its HF form drops them) got tokens of their own in
    # the byte view; the model has never seen them, so they get the mean embedding.
    cfg = dataclasses.replace(cfg, vocab_size=tok.vocab_size)
    arrays = _pad_vocab(arrays, tok.vocab_size)
  abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  flat = dict(nnx.to_flat_state(state))
  if set(flat) != set(arrays):
    raise ConversionError(
      f"{path}: tensors do not match the model: missing {sorted(set(flat) - set(arrays))[:4]}, "
      f"unexpected {sorted(set(arrays) - set(flat))[:4]}"
    )
  pdt = DTYPES[param_dtype]
  for key, var in flat.items():
    a = arrays[key]
    if tuple(a.shape) != tuple(var.shape):
      raise ConversionError(f"{path}: {key} has shape {a.shape}, expected {var.shape}")
    var.set_value(jnp.asarray(a, pdt))
  model = nnx.merge(graphdef, nnx.from_flat_state(flat))
  return model, tok


def _pad_vocab(arrays: dict, vocab: int) -> dict:
  out = dict(arrays)
  emb = arrays[("embed", "embedding")]
  extra = np.repeat(emb.mean(0, keepdims=True), vocab - len(emb), axis=0)
  out[("embed", "embedding")] = np.concatenate([emb, extra])
  if ("head", "kernel") in arrays:
    head = arrays[("head", "kernel")]
    extra = np.repeat(head.mean(1, keepdims=True), vocab - head.shape[1], axis=1)
    out[("head", "kernel")] = np.concatenate([head, extra], axis=1)
  return out


def numpy_forward(arrays: dict, cfg: TransformerConfig, tokens: np.ndarray) -> np.ndarray:
  """Logits [T, V] of a Llama model for one sequence, written out plainly in numpy.

  An independent reference for the converted model: no masks objects, no
  einsum tricks; RoPE rotates adjacent pairs (the GGUF layout).
  """

  def rms(x, w):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + cfg.norm_eps) * w

  def rope(x, pos):  # x: [T, H, D]
    d = x.shape[-1]
    inv = cfg.rope_theta ** (-np.arange(0, d, 2) / d)
    ang = pos[:, None, None] * inv[None, None, :]
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out

  t = len(tokens)
  pos = np.arange(t, dtype=np.float64)
  h_dim, n, kv = cfg.head_size, cfg.n_heads, cfg.num_kv_heads
  x = arrays[("embed", "embedding")][tokens].astype(np.float64)
  causal = np.tril(np.ones((t, t), bool))
  for i in range(cfg.n_layers):
    p = lambda *k: arrays[("blocks", *k)][i].astype(np.float64)
    y = rms(x, p("attn_norm", "scale"))
    q = rope((y @ p("attn", "wq", "kernel")).reshape(t, n, h_dim), pos)
    k = rope((y @ p("attn", "wk", "kernel")).reshape(t, kv, h_dim), pos)
    v = (y @ p("attn", "wv", "kernel")).reshape(t, kv, h_dim)
    heads = []
    for hd in range(n):
      g = hd // (n // kv)
      s = q[:, hd] @ k[:, g].T / np.sqrt(h_dim)
      s = np.where(causal, s, -np.inf)
      w = np.exp(s - s.max(-1, keepdims=True))
      heads.append((w / w.sum(-1, keepdims=True)) @ v[:, g])
    x = x + np.concatenate(heads, -1) @ p("attn", "wo", "kernel")
    y = rms(x, p("mlp_norm", "scale"))
    gate = y @ p("mlp", "gate", "kernel")
    x = x + (gate / (1 + np.exp(-gate)) * (y @ p("mlp", "up", "kernel"))) @ p(
      "mlp", "down", "kernel"
    )
  x = rms(x, arrays[("final_norm", "scale")].astype(np.float64))
  head = arrays.get(("head", "kernel"))
  return x @ (arrays[("embed", "embedding")].astype(np.float64).T if head is None else head)
