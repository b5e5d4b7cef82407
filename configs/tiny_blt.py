"""A tiny BLT (space patches: no entropy model to train first) for tests and smoke runs."""

from configs import blt_base


def get_config():
  c = blt_base.get_config("space")
  c.model.update(
    d_local=32,
    d_global=64,
    n_layers_encoder=1,
    n_layers_global=2,
    n_layers_decoder=1,
    n_heads_local=2,
    n_heads_global=4,
    cross_attn_heads=2,
    hash_vocab=512,
    hash_ngram_sizes=(3, 4),
    local_window=64,
  )
  c.patching.update(max_patches=0)  # a slot per byte: nothing overflows at this size
  c.data.update(seq_len=128, batch_size=8, eval_batches=4)
  c.train.update(steps=200, lr=3e-3, warmup_steps=20, log_every=20, eval_every=100, ckpt_every=100)
  return c
