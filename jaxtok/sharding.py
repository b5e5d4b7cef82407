"""Logical axis names -> mesh axes, in one table (MaxText style).

Every parameter is created with logical axis names such as ("embed", "mlp"), and the
models constrain their activations at block boundaries with names such as ("batch",
"seq", "embed") (`constrain`). A rules table maps those names onto the axes of a device
mesh. One device, 8 fake CPU devices and a TPU pod then run the same model code: only
the mesh and the rules change (`config.mesh`: sizes, `dcn_data`, `rules`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]


class MeshConfigError(ValueError):
  """A `config.mesh` field that cannot work; the message names it."""


def require(ok: bool, field: str, why: str) -> None:
  if not ok:
    raise MeshConfigError(f"config.{field}: {why}")


# logical name -> mesh axis (or tuple of axes, or None = replicated). Parameters and
# activations share the names; within one array a mesh axis shards one dimension only, the
# first that asks for it (an activation's "batch" takes fsdp, so its "embed" is whole).
RULES: Rules = (
  ("batch", ("data", "fsdp")),
  ("embed", "fsdp"),
  ("mlp", "tensor"),
  ("heads", "tensor"),
  ("kv_heads", "tensor"),
  ("vocab", "tensor"),
  ("head_dim", None),
  ("seq", None),  # activation length (tokens, bytes)
  ("patches", None),  # a BLT's latent sequence (patch slots)
  ("norm", None),
  ("layers", None),  # the stacked-layer axis (jaxtok.nn.stack): every device holds all layers
)

LOGICAL_AXES = tuple(name for name, _ in RULES)


def _preset(**changes) -> Rules:
  return tuple((name, changes.get(name, axes)) for name, axes in RULES)


# config.mesh.rules presets.
PRESETS: dict[str, Rules] = {
  # FSDP over `fsdp` (parameters' embed axis) and tensor parallelism (heads, MLP, vocab)
  # over `tensor`; the batch over data x fsdp.
  "default": RULES,
  # ZeRO-3 over every non-data axis: parameters' embed axis over fsdp x tensor, the batch
  # over all three axes, no tensor parallelism.
  "fsdp": _preset(
    batch=("data", "fsdp", "tensor"),
    embed=("fsdp", "tensor"),
    mlp=None,
    heads=None,
    kv_heads=None,
    vocab=None,
  ),
  # Tensor parallelism over fsdp x tensor, parameters otherwise replicated; the batch over data.
  "tensor_parallel": _preset(
    batch="data",
    embed=None,
    mlp=("fsdp", "tensor"),
    heads=("fsdp", "tensor"),
    kv_heads=("fsdp", "tensor"),
    vocab=("fsdp", "tensor"),
  ),
  # Plain data parallelism: parameters replicated, the batch over every axis.
  "data_parallel": _preset(
    batch=("data", "fsdp", "tensor"), embed=None, mlp=None, heads=None, kv_heads=None, vocab=None
  ),
}


def parse_rules(spec: str) -> Rules:
  """The rules `config.mesh.rules` names: a preset, optionally followed by overrides, or
  overrides of "default" alone. "fsdp", "default,seq=tensor", "batch=data+fsdp,mlp=none".

  An override is `logical=axis[+axis...]`; "none" (or nothing) replicates. Errors name
  the field.
  """
  items = [s.strip() for s in spec.split(",") if s.strip()]
  field = f"mesh.rules={spec!r}"
  base = "default"
  if items and "=" not in items[0]:
    base = items.pop(0)
  require(base in PRESETS, field, f"unknown preset {base!r}; presets: {sorted(PRESETS)}")
  table = dict(PRESETS[base])
  for item in items:
    require("=" in item, field, f"{item!r}: a preset comes first; an override is name=axes")
    name, _, rhs = (s.strip() for s in item.partition("="))
    require(name in table, field, f"unknown logical axis {name!r}; known: {list(table)}")
    axes = tuple(a.strip() for a in rhs.split("+") if a.strip() and a.strip() != "none")
    bad = [a for a in axes if a not in MESH_AXES]
    require(not bad, field, f"unknown mesh axis {bad[:1]} in {item!r}; mesh axes: {MESH_AXES}")
    require(len(set(axes)) == len(axes), field, f"{item!r} repeats a mesh axis")
    table[name] = None if not axes else axes[0] if len(axes) == 1 else axes
  return tuple(table.items())


# The rules activation constraints (and `logical_to_mesh` without explicit rules) use.
_ACTIVE: contextvars.ContextVar[Rules] = contextvars.ContextVar("jaxtok_rules", default=RULES)


def current_rules() -> Rules:
  return _ACTIVE.get()


@contextlib.contextmanager
def use_rules(rules: Rules):
  """Rules for the code traced inside (a jitted function traces at its first call)."""
  token = _ACTIVE.set(rules)
  try:
    yield
  finally:
    _ACTIVE.reset(token)


@contextlib.contextmanager
def activate(mesh: Mesh, rules: Rules):
  """The mesh (`jax.set_mesh`) and rules that model code traced inside is constrained to."""
  with jax.set_mesh(mesh), use_rules(rules):
    yield


def _axes(a) -> tuple[str, ...]:
  return () if a is None else (a,) if isinstance(a, str) else tuple(a)


def device_grid(
  data: int, fsdp: int, tensor: int, devices: Sequence, dcn_data: int = 1
) -> np.ndarray:
  """The [data, fsdp, tensor] array of devices: `mesh_utils` orders them by the physical
  topology (TPU ICI links). With `dcn_data` > 1 the data axis is `dcn_data` groups of
  devices joined over the data-center network (slices; without a slice index, processes;
  one process: contiguous chunks), each group a [data / dcn_data, fsdp, tensor] mesh, so
  only the data axis's gradient all-reduce crosses DCN."""
  if dcn_data == 1:
    return mesh_utils.create_device_mesh((data, fsdp, tensor), devices)
  ici, dcn = (data // dcn_data, fsdp, tensor), (dcn_data, 1, 1)
  if hasattr(devices[0], "slice_index"):
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  if len({d.process_index for d in devices}) > 1:
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=True)
  # One process: no DCN between the devices; the grid has the multi-slice layout all the same.
  n = len(devices) // dcn_data
  groups = [
    mesh_utils.create_device_mesh(ici, devices[i * n : (i + 1) * n]) for i in range(dcn_data)
  ]
  return np.concatenate(groups, axis=0)


def make_mesh(
  data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None, *, dcn_data: int = 1
) -> Mesh:
  """A (data, fsdp, tensor) mesh; -1 for `data` takes the remaining devices; `dcn_data`
  of the data axis's ways go over DCN (see `device_grid`). Errors name config.mesh fields."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  require(fsdp >= 1 and tensor >= 1, "mesh", f"fsdp={fsdp} and tensor={tensor} must be >= 1")
  if data == -1:
    require(
      n % (fsdp * tensor) == 0,
      "mesh",
      f"{n} devices do not divide into fsdp={fsdp} x tensor={tensor}",
    )
    data = n // (fsdp * tensor)
  require(
    data >= 1 and data * fsdp * tensor == n,
    "mesh",
    f"mesh data={data} x fsdp={fsdp} x tensor={tensor} needs {data * fsdp * tensor} "
    f"devices, have {n}",
  )
  require(
    dcn_data >= 1 and data % dcn_data == 0,
    "mesh.dcn_data",
    f"{dcn_data} must be >= 1 and divide mesh.data={data} (the data axis's ways over DCN)",
  )
  return Mesh(device_grid(data, fsdp, tensor, devices, dcn_data), MESH_AXES)


def from_config(mesh_config) -> tuple[Mesh, Rules]:
  """(mesh, rules) of a config's `mesh` section."""
  m = mesh_config
  rules = parse_rules(m.get("rules", "default"))
  mesh = make_mesh(m.data, m.fsdp, m.tensor, dcn_data=m.get("dcn_data", 1))
  return mesh, rules


def logical_to_mesh(names: Sequence[str | None] | None, rules: Rules | None = None) -> P:
  """PartitionSpec for one array from its logical axis names (a mesh axis goes to the first
  dimension that asks for it); `rules` default to the active ones (`use_rules`)."""
  if names is None:
    return P()
  table = dict(current_rules() if rules is None else rules)
  out, used = [], set()
  for name in names:
    if name is not None and name not in table:
      raise KeyError(f"logical axis {name!r} has no rule; add it to jaxtok.sharding.RULES")
    axes = tuple(a for a in _axes(None if name is None else table[name]) if a not in used)
    used.update(axes)
    out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return P(*out)


def _fit(spec: P, shape, mesh) -> P:
  """Drops mesh axes that do not divide the dimension they would shard."""
  fitted = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    if axes is None:
      fitted.append(None)
      continue
    size = np.prod([mesh.shape[a] for a in _axes(axes)])
    fitted.append(axes if dim % size == 0 else None)
  return P(*fitted)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """`x` pinned to the layout its logical axis names give under the active rules, when a
  mesh of more than one device is set (`jax.set_mesh`); `x` itself otherwise.

  At block boundaries this keeps XLA's partitioner from inventing layouts that it then
  cannot convert (an "involuntary full rematerialization": a gather to every device).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1 or mesh.manual_axes:  # under shard_map: per-shard code
    return x
  return jax.lax.with_sharding_constraint(
    x, NamedSharding(mesh, _fit(logical_to_mesh(names), x.shape, mesh))
  )


def state_shardings(state: nnx.State, mesh: Mesh, rules: Rules | None = None):
  """NamedShardings for an nnx.State whose Variables carry `sharding` metadata."""

  def one(var):
    names = var.get_metadata().get("out_sharding")
    return NamedSharding(mesh, _fit(logical_to_mesh(names, rules), var.shape, mesh))

  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, rules: Rules | None = None) -> NamedSharding:
  """Leading (batch) axis as the rules say; everything else replicated."""
  return NamedSharding(mesh, logical_to_mesh(("batch",), rules))


def batch_shards(sizes, rules: Rules | None = None) -> int:
  """Ways the batch axis is split on a mesh of these axis sizes (`mesh.shape`)."""
  return int(np.prod([sizes[a] for a in _axes(logical_to_mesh(("batch",), rules)[0])]))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
