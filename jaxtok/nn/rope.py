"""Rotary position embeddings.

Two layouts of the rotated pairs exist in the wild: "interleaved" rotates
adjacent pairs (x[2i], x[2i+1]) (GPT-J, BLT, llama.cpp/GGUF weights) and "half"
rotates (x[i], x[i + D/2]) (GPT-NeoX, Hugging Face Llama). Both give the same
attention scores for weights permuted accordingly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rope_angles(positions: jax.Array, head_dim: int, theta: float) -> jax.Array:
  """[..., T] positions -> [..., T, head_dim // 2] rotation angles (float32)."""
  inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  return positions.astype(jnp.float32)[..., None] * inv_freq


def apply_rope(
  x_BxTxHxD: jax.Array,
  positions_BxT: jax.Array,
  *,
  theta: float = 10000.0,
  layout: str = "interleaved",
) -> jax.Array:
  """Rotates q or k by the angle of each position; computed in float32."""
  head_dim = x_BxTxHxD.shape[-1]
  ang = rope_angles(positions_BxT, head_dim, theta)[:, :, None, :]  # B x T x 1 x D/2
  sin, cos = jnp.sin(ang), jnp.cos(ang)
  x = x_BxTxHxD.astype(jnp.float32)
  if layout == "interleaved":
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(x.shape)
  elif layout == "half":
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
  else:
    raise ValueError(f"rope layout must be 'interleaved' or 'half', got {layout!r}")
  return out.astype(x_BxTxHxD.dtype)
