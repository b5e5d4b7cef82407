"""Rotary position embeddings.

Two layouts of the rotated pairs exist in the wild: "interleaved" rotates
adjacent pairs (x[2i], x[2i+1]) (GPT-J, BLT, llama.cpp/GGUF weights) and "half"
rotates (x[i], x[i + D/2]) (GPT-NeoX, Hugging Face Llama). Both give the same
attention scores for weights permuted accordingly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def llama3_frequencies(inv_freq: np.ndarray, factor, low_freq_factor, high_freq_factor, context):
  """Llama 3.1's RoPE scaling: wavelengths longer than context / low_freq_factor are divided
  by `factor`, shorter than context / high_freq_factor kept, and those between interpolated."""
  wavelen = 2 * math.pi / inv_freq
  smooth = (context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
  mixed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
  out = np.where(wavelen > context / low_freq_factor, inv_freq / factor, mixed)
  return np.where(wavelen < context / high_freq_factor, inv_freq, out)


def rope_angles(
  positions: jax.Array, head_dim: int, theta: float, scaling: tuple | None = None
) -> jax.Array:
  """[..., T] positions -> [..., T, head_dim // 2] rotation angles (float32).

  `scaling`: (factor, low_freq_factor, high_freq_factor, original context) of Llama 3.1.
  """
  inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  if scaling is not None:  # constants: computed on the host when traced
    exact = np.asarray(theta, np.float64) ** (-np.arange(0, head_dim, 2) / head_dim)
    inv_freq = jnp.asarray(llama3_frequencies(exact, *scaling), jnp.float32)
  return positions.astype(jnp.float32)[..., None] * inv_freq


def apply_rope(
  x_BxTxHxD: jax.Array,
  positions_BxT: jax.Array,
  *,
  theta: float = 10000.0,
  layout: str = "interleaved",
  scaling: tuple | None = None,
) -> jax.Array:
  """Rotates q or k by the angle of each position; computed in float32."""
  head_dim = x_BxTxHxD.shape[-1]
  ang = rope_angles(positions_BxT, head_dim, theta, scaling)[:, :, None, :]  # B x T x 1 x D/2
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
