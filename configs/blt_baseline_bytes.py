"""Byte-level transformer FLOP-matched to configs/blt_*.py.

3.35 MFLOPs/byte forward (d=192, 3 layers, 512-byte rows) against 3.45 for the
default BLT at 4.5 bytes/patch (d_local=128 with 1+2 local layers, d_global=256
with 4 latent layers); `python -m experiments.blt_compare` matches training
FLOPs exactly by the number of steps.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.model.update(d_model=192, n_layers=3, n_heads=4)
  c.data.update(seq_len=512, batch_size=8)
  c.train.update(steps=600, lr=3e-3, warmup_steps=60, log_every=25, eval_every=200, ckpt_every=200)
  return c
