"""jaxtok: what should a language model's unit of input be? BLT, ZeTT and
patch-level training in JAX / Flax NNX."""

__version__ = "0.1.0"


def __getattr__(name):
  # `jaxtok.restore(workdir)` without importing the trainer on `import jaxtok`.
  if name == "restore":
    from jaxtok.train.trainer import restore

    return restore
  raise AttributeError(f"module 'jaxtok' has no attribute {name!r}")
