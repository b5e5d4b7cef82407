"""BLT with space patches (SpaceByte-like): a patch starts at a spacelike byte."""

from configs import blt_base


def get_config():
  return blt_base.get_config("space")
