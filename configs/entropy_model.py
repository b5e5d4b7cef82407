"""The default job: BLT's entropy model, a small causal byte LM, on the embedded corpus.

BLT's local-model recipe (pre-norm, RoPE, SwiGLU, sliding-window attention of
512 bytes) at ~2M parameters, so it trains meaningfully in about five minutes on
a 2-core CPU. Scale it up with --config.model.d_model / n_layers / train.steps.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.model.update(d_model=192, n_layers=4, n_heads=3, sliding_window=512)
  c.data.update(seq_len=512, batch_size=8)
  c.train.update(steps=250, lr=3e-3, warmup_steps=25, log_every=25, eval_every=125, ckpt_every=125)
  return c
