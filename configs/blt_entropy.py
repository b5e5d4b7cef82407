"""BLT with entropy patches from the entropy model (configs/entropy_model.py).

  python -m experiments.train --config=configs/entropy_model.py --workdir=workdirs/entropy_model
  python -m experiments.train --config=configs/blt_entropy.py --workdir=workdirs/blt_entropy

`--config.patching.rule=monotonic` (with a smaller threshold) or `topk` pick the other rules.
"""

from configs import blt_base


def get_config():
  return blt_base.get_config("entropy")
