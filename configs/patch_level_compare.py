"""Patch-level vs token-level training (experiments/patch_level_compare.py), the larger preset.

BPE (4096, trained on the train split) and bytes; token-level, K=4 and K=2 with
λ = 2/3 of the steps on patches; two token budgets (data sizes). Run it under
`flock /tmp/jaxtok-cpu.lock` so that the wall-clock ratios are uncontended.
"""

from ml_collections import config_dict

from configs import base


def get_config():
  c = base.get_config()
  c.model.update(d_model=128, n_layers=4, n_heads=4)
  c.data.update(seq_len=128, batch_size=16, eval_batches=32)
  c.train.update(lr=3e-3, warmup_steps=20, log_every=25, eval_every=0, ckpt_every=250)
  c.compare = config_dict.ConfigDict(
    dict(
      tokenizers=("bpe:4096", ""),  # "" = bytes
      steps=(100, 400),  # token budgets in steps of batch_size x seq_len tokens
      K=(4, 2),
      fraction=2 / 3,
    )
  )
  return c
