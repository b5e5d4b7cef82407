"""BLT's entropy model: a trained byte LM that scores next-byte entropies.

The entropy model is a byte-level `Transformer` trained with
`python -m experiments.train --config=configs/entropy_model.py`. Its entropy at
position t, H = -sum p ln p (nats) of the prediction made at t, is the entropy
of byte t+1 given the bytes up to t ("next entropy"); `jaxtok.patching`
turns them into patch boundaries.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok import paths
from jaxtok.data import codec
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.transformer import Transformer
from jaxtok.patching.config import PatchingConfig
from jaxtok.patching.entropy import entropy_from_logits


def fingerprint(workdir: str) -> str:
  """ "<absolute workdir>@<latest step>" of an entropy model; checks it is a byte LM."""
  workdir = paths.absolute(workdir)
  config = workdir_lib.load_config(workdir)
  if config.model.get("name", "transformer") != "transformer" or config.data.get("tokenizer"):
    raise ValueError(
      f"{workdir} holds a {config.model.get('name')!r} model"
      + (f" on tokenizer {config.data.tokenizer!r}" if config.data.get("tokenizer") else "")
      + "; the entropy model must be a byte-level transformer (configs/entropy_model.py)"
    )
  ckpt = workdir_lib.checkpointer(workdir, read_only=True)
  step = ckpt.latest_step()
  ckpt.close()
  if step is None:
    raise ValueError(f"{workdir} has no checkpoint: train the entropy model first")
  return f"{workdir}@{step}"


class EntropyModel:
  """A trained byte LM that scores next-byte entropies with a jitted forward."""

  def __init__(self, model: Transformer, *, seq_len: int, fingerprint: str = ""):
    if not isinstance(model, Transformer) or model.cfg.vocab_size != codec.VOCAB_SIZE:
      raise ValueError(
        f"the entropy model must be a byte-level Transformer with vocab {codec.VOCAB_SIZE}, "
        f"got {type(model).__name__}"
        + (f" with vocab {model.cfg.vocab_size}" if isinstance(model, Transformer) else "")
      )
    self.model = model
    self.seq_len = seq_len
    self.fingerprint = fingerprint
    self.graphdef, self.params = nnx.split(model, nnx.Param)
    self._fn = jax.jit(self.apply)

  def apply(self, params, ids_BxT, segment_ids_BxT, positions_BxT) -> jax.Array:
    """Next entropies [B, T] as a pure function of `params` (to compose into jitted code)."""
    m = nnx.merge(self.graphdef, params)
    return entropy_from_logits(m(ids_BxT, segment_ids=segment_ids_BxT, positions=positions_BxT))

  @classmethod
  def load(cls, workdir: str) -> EntropyModel:
    """The entropy model trained in `workdir` (its latest checkpoint)."""
    fp = fingerprint(workdir)
    model, config = workdir_lib.restore(workdir)
    return cls(model, seq_len=int(config.data.seq_len), fingerprint=fp)

  def next_entropies(self, ids_BxT, segment_ids_BxT=None, positions_BxT=None) -> np.ndarray:
    """float32 [B, T]: entropy of the prediction made at every position."""
    ids = jnp.asarray(ids_BxT, jnp.int32)
    seg = jnp.ones(ids.shape, jnp.int32) if segment_ids_BxT is None else segment_ids_BxT
    if positions_BxT is None:
      positions_BxT = jnp.broadcast_to(jnp.arange(ids.shape[1], dtype=jnp.int32), ids.shape)
    return np.asarray(self._fn(self.params, ids, jnp.asarray(seg), jnp.asarray(positions_BxT)))


def patching_from_workdir(
  workdir: str, *, threshold: float | None = None
) -> tuple[PatchingConfig, EntropyModel | None]:
  """The patching of a BLT workdir (config + entropy model), or BLT's global entropy rule
  with the entropy model of an entropy-model workdir; `threshold` overrides the config's."""
  config = workdir_lib.load_config(workdir)
  if config.model.get("name") == "blt":
    pcfg = PatchingConfig.from_dict(config.patching)
    em_dir = pcfg.entropy_model_workdir if pcfg.scheme == "entropy" else None
  else:
    pcfg = PatchingConfig(scheme="entropy", entropy_model_workdir=workdir)
    em_dir = workdir
  if threshold is not None:
    pcfg = dataclasses.replace(pcfg, threshold=threshold)
  return pcfg, (EntropyModel.load(em_dir) if em_dir else None)
