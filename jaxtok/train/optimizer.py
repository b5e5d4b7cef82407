"""AdamW with linear warm-up + cosine decay and global-norm clipping."""

from __future__ import annotations

import jax
import optax


def learning_rate_schedule(
  lr: float, warmup_steps: int, total_steps: int, final_lr_fraction: float = 0.1
) -> optax.Schedule:
  """0 -> lr linearly over `warmup_steps`, then cosine down to lr*final_lr_fraction."""
  warmup_steps = max(0, min(warmup_steps, total_steps - 1))
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=lr,
    warmup_steps=warmup_steps,
    decay_steps=max(total_steps, warmup_steps + 1),
    end_value=lr * final_lr_fraction,
  )


def _decay_mask(params):
  # Decay matrices only: norm scales (1-D) are left alone.
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
  *,
  lr: float,
  warmup_steps: int,
  total_steps: int,
  weight_decay: float = 0.1,
  b1: float = 0.9,
  b2: float = 0.95,
  eps: float = 1e-8,
  clip_norm: float = 1.0,
  final_lr_fraction: float = 0.1,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  schedule = learning_rate_schedule(lr, warmup_steps, total_steps, final_lr_fraction)
  parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm and clip_norm > 0 else []
  parts.append(
    optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=_decay_mask)
  )
  return optax.chain(*parts), schedule
