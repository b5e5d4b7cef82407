"""FLOP accounting, in forward FLOPs per position by named part.

Conventions (Kaplan et al. / Chinchilla): a multiply-add is 2 FLOPs; the
backward pass costs 2x the forward, so training = 3x forward; embedding
lookups are free; attention scores count only the keys a query can see
(causal / sliding window / patch masks), which is the work a block-skipping
kernel does. Models add their parts (BLT: encoder, global, decoder) and
divide by the bytes each position stands for to get FLOPs per byte.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Flops:
  """Forward FLOPs per byte, by part; training and inference derive from it."""

  parts: dict[str, float]

  @property
  def forward(self) -> float:
    return float(sum(self.parts.values()))

  @property
  def train(self) -> float:
    return 3.0 * self.forward

  @property
  def inference(self) -> float:
    return self.forward

  def scaled(self, factor: float) -> Flops:
    return Flops({k: v * factor for k, v in self.parts.items()})

  def __add__(self, other: Flops) -> Flops:
    keys = set(self.parts) | set(other.parts)
    return Flops({k: self.parts.get(k, 0.0) + other.parts.get(k, 0.0) for k in sorted(keys)})

  def prefixed(self, prefix: str) -> Flops:
    return Flops({f"{prefix}{k}": v for k, v in self.parts.items()})


def visible_keys(seq_len: int, window: int | None = None) -> float:
  """Mean number of keys a causal query sees in a row of `seq_len` (optionally windowed)."""
  w = seq_len if window is None else min(window, seq_len)
  # Queries 0..w-1 see i+1 keys; the remaining seq_len-w see w keys.
  total = w * (w + 1) / 2 + (seq_len - w) * w
  return total / seq_len


def transformer_flops_per_token(
  *,
  d_model: int,
  n_layers: int,
  n_heads: int,
  n_kv_heads: int,
  head_dim: int,
  mlp_dim: int,
  vocab_size: int | None,
  context: float,
) -> Flops:
  """Forward FLOPs per token of a Llama-style decoder.

  `context` is the mean number of keys a query attends to (see visible_keys);
  `vocab_size=None` leaves out the output head (for models whose head is elsewhere).
  """
  qo = 2 * d_model * n_heads * head_dim  # wq and wo
  kv = 2 * d_model * n_kv_heads * head_dim  # wk and wv
  mlp = 3 * d_model * mlp_dim  # gate, up, down
  parts = {
    "attn_proj": 2.0 * n_layers * (qo + kv),
    "attn_scores": 2.0 * n_layers * 2 * n_heads * head_dim * context,  # QK^T and PV
    "mlp": 2.0 * n_layers * mlp,
  }
  if vocab_size:
    parts["head"] = 2.0 * d_model * vocab_size
  return Flops(parts)


def transformer_config_flops(cfg, seq_len: int) -> Flops:
  """Per-token forward FLOPs of a jaxtok TransformerConfig on rows of `seq_len`."""
  return transformer_flops_per_token(
    d_model=cfg.d_model,
    n_layers=cfg.n_layers,
    n_heads=cfg.n_heads,
    n_kv_heads=cfg.num_kv_heads,
    head_dim=cfg.head_size,
    mlp_dim=cfg.hidden_dim,
    vocab_size=cfg.vocab_size,
    context=visible_keys(seq_len, cfg.sliding_window),
  )


def count_params(params) -> int:
  import jax

  return int(sum(x.size for x in jax.tree.leaves(params)))
