"""BLT with static patches of `patching.patch_size` bytes (MEGABYTE-like)."""

from configs import blt_base


def get_config():
  return blt_base.get_config("static")
