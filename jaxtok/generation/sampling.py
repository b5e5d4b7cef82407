"""Choosing the next id from logits: greedy, temperature, top-k, top-p; per-row keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxtok.data import codec


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How ids are drawn (static under jit: one compilation per setting)."""

  temperature: float = 0.0  # 0 = greedy (argmax)
  top_p: float = 1.0  # nucleus mass in (0, 1]; 1 = no cut
  top_k: int = 0  # keep the k most likely ids; 0 = no cut

  def __post_init__(self):
    if not self.temperature >= 0:
      raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
    if self.top_k < 0:
      raise ValueError(f"top_k must be >= 0 (0 = no cut), got {self.top_k}")


def byte_vocab_allowed() -> np.ndarray:
  """[260] bool: the ids a byte model may produce (bytes and EOS; not BOS, BOE, delimiter)."""
  allowed = np.zeros(codec.VOCAB_SIZE, bool)
  allowed[codec.OFFSET :] = True
  allowed[codec.EOS_ID] = True
  return allowed


def row_keys(seed: int | Sequence[int], batch: int) -> jax.Array:
  """[B, 2] keys: `seed` per row (a sequence), or row b of an int seed gets fold_in(seed, b).

  Generated id i of a row is drawn with fold_in(row key, i), so a row's sample
  does not depend on the batch it is in when its key is the same.
  """
  if isinstance(seed, int | np.integer):
    base = jax.random.PRNGKey(int(seed))
    return jnp.stack([jax.random.fold_in(base, b) for b in range(batch)])
  seeds = list(seed)
  if len(seeds) != batch:
    raise ValueError(f"seed: {len(seeds)} seeds for {batch} prompts")
  return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])


def sample(
  logits_BxV: jax.Array, keys_Bx2: jax.Array, allowed_V: jax.Array, cfg: SamplingConfig
) -> jax.Array:
  """int32 [B]: one id per row among the `allowed_V` ids."""
  logits = jnp.where(allowed_V, logits_BxV.astype(jnp.float32), -jnp.inf)
  if cfg.temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / cfg.temperature
  if cfg.top_k:
    kth = jax.lax.top_k(logits, min(cfg.top_k, logits.shape[-1]))[0][:, -1:]
    logits = jnp.where(logits >= kth, logits, -jnp.inf)
  if cfg.top_p < 1:
    # The smallest set of most likely ids whose mass reaches top_p (ties at its edge stay in).
    sorted_desc = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    kept = jnp.sum(jnp.cumsum(probs, axis=-1) - probs < cfg.top_p, axis=-1, keepdims=True)
    edge = jnp.take_along_axis(sorted_desc, kept - 1, axis=-1)
    logits = jnp.where(logits >= edge, logits, -jnp.inf)
  return jax.vmap(jax.random.categorical)(keys_Bx2, logits).astype(jnp.int32)


def log_prob(logits_BxV: jax.Array, ids_B: jax.Array) -> jax.Array:
  """float32 [B]: log p(id) under the model's full softmax (before temperature and cuts)."""
  logp = jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, ids_B[:, None], axis=-1)[:, 0]
