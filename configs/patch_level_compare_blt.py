"""Patch-level training of a BLT's latent transformer (experimental: no paper has done it).

experiments/patch_level_compare.py with a BLT on bytes (space patches, so no
entropy model is needed): plain BLT vs the latent reading groups of K = 4 and
K = 2 patches for the first λ = 2/3 of the steps, at two byte budgets. Only the
latent is cheaper in the patch phase, so cost_theory comes from the FLOP model.
Run under `flock /tmp/jaxtok-cpu.lock`.
"""

from configs import blt_base, patch_level_compare


def get_config():
  c = patch_level_compare.get_config()
  c.model = blt_base.model_defaults()
  c.model.update(d_local=64, d_global=192, n_layers_global=4, n_layers_decoder=1)
  c.model.update(hash_vocab=1024, hash_ngram_sizes=(3, 4, 5, 6), local_window=128)
  c.patching = blt_base.patching_defaults()
  c.patching.update(scheme="space", max_patch_length=16)
  c.data.update(seq_len=256, batch_size=8)
  c.compare.update(tokenizers=("",), steps=(100, 300))
  return c
