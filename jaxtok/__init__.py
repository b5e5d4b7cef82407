"""jaxtok: what should a language model's unit of input be? BLT, ZeTT and
patch-level training in JAX / Flax NNX."""

from jaxtok.generation.api import generate
from jaxtok.models.workdir import restore

__version__ = "0.1.0"
__all__ = ["generate", "restore"]
