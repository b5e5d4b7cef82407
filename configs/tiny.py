"""A tiny model for tests and smoke runs: compiles and steps in well under a second."""

from configs import base


def get_config():
  c = base.get_config()
  c.model.update(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128)
  c.data.update(seq_len=128, batch_size=8, eval_batches=4)
  c.train.update(steps=200, lr=3e-3, warmup_steps=20, log_every=20, eval_every=100, ckpt_every=100)
  return c
