"""The default job: BLT's entropy model, a small causal byte LM, on the embedded corpus.

A few million parameters with BLT's local-model recipe (sliding-window
attention); trains meaningfully in a few minutes on a laptop CPU.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.model.update(d_model=256, n_layers=4, n_heads=4, sliding_window=512)
  c.data.update(seq_len=512, batch_size=8)
  c.train.update(steps=600, lr=3e-3, warmup_steps=60, log_every=25, eval_every=200, ckpt_every=200)
  return c
