"""BPE-token transformer FLOP-matched (per byte) to configs/blt_*.py.

Byte-level BPE with 4096 tokens trained on the training split (HF tokenizers);
on the stdlib corpus a token is ~3.3 bytes, so 160-token rows hold about the
512 bytes of a BLT row, and d=256 with 5 layers costs ~3.2 MFLOPs/byte forward
(head included) against 3.45 for the default BLT at 4.5 bytes/patch.
Bits-per-byte stay comparable: every token's byte length is counted.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.tokenizer = "bpe:4096"
  c.model.update(d_model=256, n_layers=5, n_heads=4)
  c.data.update(seq_len=160, batch_size=8)
  c.train.update(steps=600, lr=3e-3, warmup_steps=60, log_every=25, eval_every=200, ckpt_every=200)
  return c
