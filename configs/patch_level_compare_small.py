"""The patch-level comparison in a few minutes on a laptop CPU (a smoke run of the method:
the numbers are too small to conclude from; see configs/patch_level_compare.py)."""

from configs import patch_level_compare


def get_config():
  c = patch_level_compare.get_config()
  c.model.update(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128)
  c.data.update(seq_len=64, batch_size=8, eval_batches=4)
  c.train.update(warmup_steps=5, log_every=10, ckpt_every=0, progress_bar=False)
  c.compare.update(tokenizers=("bpe:1024", ""), steps=(30, 90))
  return c
