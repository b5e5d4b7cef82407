"""Logical axis names -> mesh axes, in one table (MaxText style).

Every parameter is created with logical axis names such as ("embed", "mlp");
`RULES` maps those names onto the axes of a device mesh. One device, 8 fake
CPU devices and a TPU pod then run the same model code: only the mesh changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axis (or tuple of axes, or None = replicated).
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
  ("batch", ("data", "fsdp")),
  ("embed", "fsdp"),
  ("mlp", "tensor"),
  ("heads", "tensor"),
  ("kv_heads", "tensor"),
  ("vocab", "tensor"),
  ("head_dim", None),
  ("seq", None),
  ("norm", None),
  ("layers", None),  # the stacked-layer axis (jaxtok.nn.stack): every device holds all layers
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
  """A (data, fsdp, tensor) mesh; -1 for `data` takes the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  if data == -1:
    if len(devices) % (fsdp * tensor):
      raise ValueError(f"{len(devices)} devices do not divide into fsdp={fsdp} x tensor={tensor}")
    data = len(devices) // (fsdp * tensor)
  if data * fsdp * tensor != len(devices):
    raise ValueError(
      f"mesh data={data} x fsdp={fsdp} x tensor={tensor} needs {data * fsdp * tensor} "
      f"devices, have {len(devices)}"
    )
  return Mesh(np.asarray(devices).reshape(data, fsdp, tensor), MESH_AXES)


def logical_to_mesh(names: Sequence[str | None] | None, rules=RULES) -> P:
  """PartitionSpec for one array from its logical axis names."""
  if names is None:
    return P()
  table = dict(rules)
  out = []
  for name in names:
    if name is not None and name not in table:
      raise KeyError(f"logical axis {name!r} has no rule; add it to jaxtok.sharding.RULES")
    out.append(None if name is None else table[name])
  return P(*out)


def _fit(spec: P, shape, mesh: Mesh) -> P:
  """Drops mesh axes that do not divide the dimension they would shard."""
  fitted = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    if axes is None:
      fitted.append(None)
      continue
    size = np.prod([mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes)])
    fitted.append(axes if dim % size == 0 else None)
  return P(*fitted)


def state_shardings(state: nnx.State, mesh: Mesh, rules=RULES):
  """NamedShardings for an nnx.State whose Variables carry `sharding` metadata."""

  def one(var):
    names = var.get_metadata().get("out_sharding")
    return NamedSharding(mesh, _fit(logical_to_mesh(names, rules), var.shape, mesh))

  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis over data x fsdp; everything else replicated."""
  return NamedSharding(mesh, logical_to_mesh(("batch",)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
