"""Shared defaults of the BLT configs (blt_entropy / blt_space / blt_static).

Not a runnable config: the variants set `patching.scheme`. Sizes are for a CPU:
a ~1.4M-parameter latent transformer over patches with light local models.
"""

from ml_collections import config_dict

from configs import base
from jaxtok import configlib
from jaxtok.models.blt import BLTConfig
from jaxtok.patching import PatchingConfig


def model_defaults() -> config_dict.ConfigDict:
  """Every field of the BLT (jaxtok.models.blt.BLTConfig), at its default."""
  return configlib.defaults(BLTConfig, name="blt")


def patching_defaults() -> config_dict.ConfigDict:
  """Every field of jaxtok.patching.PatchingConfig; sizes for 512-byte rows."""
  return configlib.defaults(
    PatchingConfig,
    max_patch_length=16,
    max_patches=192,  # patch slots per 512-byte row (0 = one per byte, never overflows)
    entropy_model_workdir="workdirs/entropy_model",
  )


def get_config(scheme: str = "entropy"):
  c = base.get_config()
  c.model = model_defaults()
  c.patching = patching_defaults()
  c.patching.scheme = scheme
  c.data.update(seq_len=512, batch_size=8)
  c.train.update(steps=600, lr=3e-3, warmup_steps=60, log_every=25, eval_every=200, ckpt_every=200)
  return c
