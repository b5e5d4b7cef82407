"""A training workdir read back: its resolved config, its model, its weights.

A workdir holds `config.json` (the resolved config the run trained with: the
tokenizer path, the vocabulary size, the measured bytes per patch are all
written into it), `checkpoints/` (orbax) and, for token models, its own
`tokenizer.json`. Restoring reads only these files: no corpus is opened, no
tokenizer trained, nothing measured. A workdir may be a gs:// URL (`jaxtok.paths`).
"""

from __future__ import annotations

import json
import warnings

import jax
import ml_collections
from flax import nnx

from jaxtok import checkpoint as ckpt_lib
from jaxtok import paths
from jaxtok import sharding as shd
from jaxtok.models.blt import BLT, BLTConfig
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching.config import PatchingConfig

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
MODELS = ("transformer", "blt")  # config.model.name values a workdir can be restored as


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run wrote into its workdir."""
  path = paths.join(paths.check(workdir), CONFIG_FILE)
  if not paths.exists(path):
    raise ckpt_lib.CheckpointError(f"{workdir} has no {CONFIG_FILE}: not a jaxtok workdir")
  config = json.loads(paths.read_text(path))
  patching = config.get("patching") or {}
  if patching.get("scheme") == "space" and "space_rule" not in patching:
    patching["space_rule"] = "start"  # written before the reference rule became the default
  return ml_collections.ConfigDict(config)


def model_config(config) -> TransformerConfig | BLTConfig:
  """The model section of a (resolved) config as its typed dataclass."""
  name = config.model.get("name", "transformer")
  if name == "transformer":
    return TransformerConfig.from_dict(config.model)
  if name == "blt":
    if "patching" not in config:
      raise ValueError("config.patching is missing: a BLT config needs one (see configs/blt_*.py)")
    pcfg = PatchingConfig.from_dict(config.patching)
    return BLTConfig.from_dict(
      config.model,
      max_patches=pcfg.max_patches or config.data.seq_len,
      lookahead=pcfg.lookahead,
    )
  raise ValueError(f"config.model.name={name!r}: a workdir model is one of {MODELS}")


def build_model(config, rngs: nnx.Rngs) -> Transformer | BLT:
  """The (randomly initialised) model a resolved config describes."""
  cfg = model_config(config)
  return BLT(cfg, rngs=rngs) if isinstance(cfg, BLTConfig) else Transformer(cfg, rngs=rngs)


def checkpointer(workdir: str, **kw) -> ckpt_lib.Checkpointer:
  return ckpt_lib.Checkpointer(paths.join(paths.check(workdir), "checkpoints"), **kw)


def has_checkpoint(workdir: str) -> bool:
  ckpt = checkpointer(workdir, read_only=True)
  try:
    return ckpt.latest_step() is not None
  finally:
    ckpt.close()


def restore(workdir: str, step: int | None = None, *, mesh=None, rules=None):
  """(model, config) of a training workdir, for notebooks, evaluation and generation.

  Builds the model from the workdir's config.json, then loads the parameters of
  checkpoint `step` (default: the newest one that restores and verifies; a damaged
  newer one is reported with a warning and left in place). Writes nothing.
  With a `mesh`, each parameter is read straight into its shards (`jaxtok.sharding`,
  `rules` default to the active ones): no device ever holds the whole model.
  """
  config = load_config(workdir)
  abstract = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
  graphdef, params = nnx.split(abstract, nnx.Param)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shardings = (
    {} if mesh is None else dict(nnx.to_flat_state(shd.state_shardings(params, mesh, rules)))
  )
  for path, var in nnx.to_flat_state(params):
    where = shardings.get(path, device)
    var.set_value(jax.ShapeDtypeStruct(var.shape, var.dtype, sharding=where))
  ckpt = checkpointer(workdir, read_only=True)
  try:
    _, arrays, _ = ckpt.restore({"params": params}, step=step)
  finally:
    ckpt.close()
  for s, why in ckpt.skipped:
    warnings.warn(f"skipped checkpoint step {s}: {why}", stacklevel=2)
  return nnx.merge(graphdef, arrays["params"]), config


def tokenizer_path(workdir: str) -> str:
  return paths.join(paths.check(workdir), TOKENIZER_FILE)
