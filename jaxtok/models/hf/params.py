"""One table per format maps jaxtok parameter paths to Hugging Face tensor names.

The same table drives import and export. jaxtok's `Linear` kernels are
[in, out] where torch's `nn.Linear` weights are [out, in] (`transpose`), and a
stack of L layers is one [L, ...] parameter (`jaxtok.nn.stack`) where the
checkpoint has one tensor per layer (`name` holds "{i}"). Import builds each
parameter from its tensors, checks its shape and places it on the device or
mesh before reading the next, so the host holds one parameter at a time; export
hands out one tensor at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from jaxtok import sharding
from jaxtok.models.hf.tensors import HFError, Reader
from jaxtok.models.transformer import DTYPES

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Tensor:
  name: str  # with "{i}" for the layers of a stacked parameter
  transpose: bool = False
  layers: int = 0  # > 0: a stacked parameter of this many per-layer tensors
  permute: np.ndarray | None = None  # output columns: HF tensor row r = jaxtok column permute[r]

  def names(self) -> list[str]:
    return [self.name.format(i=i) for i in range(self.layers)] if self.layers else [self.name]


Table = dict[Path, Tensor]


def linear(name: str, layers: int = 0, permute=None) -> Tensor:
  return Tensor(name, transpose=True, layers=layers, permute=permute)


def block_table(prefix: str, n: int, *, qkv_bias=False, q_perm=None, k_perm=None) -> Table:
  """A stack of n pre-norm Llama blocks (`jaxtok.models.transformer.Block`)."""
  p = prefix + ".{i}."
  t = {
    ("attn_norm", "scale"): Tensor(p + "input_layernorm.weight", layers=n),
    ("attn", "wq", "kernel"): linear(p + "self_attn.q_proj.weight", n, q_perm),
    ("attn", "wk", "kernel"): linear(p + "self_attn.k_proj.weight", n, k_perm),
    ("attn", "wv", "kernel"): linear(p + "self_attn.v_proj.weight", n),
    ("attn", "wo", "kernel"): linear(p + "self_attn.o_proj.weight", n),
    ("mlp_norm", "scale"): Tensor(p + "post_attention_layernorm.weight", layers=n),
    ("mlp", "gate", "kernel"): linear(p + "mlp.gate_proj.weight", n),
    ("mlp", "up", "kernel"): linear(p + "mlp.up_proj.weight", n),
    ("mlp", "down", "kernel"): linear(p + "mlp.down_proj.weight", n),
  }
  if qkv_bias:
    for w, perm in (("q", q_perm), ("k", k_perm), ("v", None)):
      t[("attn", f"w{w}", "bias")] = Tensor(p + f"self_attn.{w}_proj.bias", layers=n, permute=perm)
  return t


def prefixed(prefix: Path, table: Table) -> Table:
  return {(*prefix, *k): v for k, v in table.items()}


def _to_jaxtok(a: np.ndarray, spec: Tensor) -> np.ndarray:
  if spec.transpose:
    a = a.T
  if spec.permute is not None:
    a = np.take(a, np.argsort(spec.permute), axis=-1)
  return a


def _to_hf(a: np.ndarray, spec: Tensor) -> np.ndarray:
  if spec.permute is not None:
    a = np.take(a, spec.permute, axis=-1)
  return a.T if spec.transpose else a


def read(reader: Reader, spec: Tensor, shape: tuple[int, ...], dtype) -> np.ndarray:
  """The jaxtok array of one parameter (stacked over layers), checked against `shape`."""
  want = shape[1:] if spec.layers else shape
  parts = []
  for name in spec.names():
    a = reader.get(name)
    got = a.T.shape if spec.transpose else a.shape
    if tuple(got) != tuple(want):
      hf_want = tuple(reversed(want)) if spec.transpose else tuple(want)
      raise HFError(
        f"{reader.where(name)}: tensor {name} has shape {tuple(a.shape)}, but the config.json "
        f"describes {hf_want}"
      )
    parts.append(_to_jaxtok(a, spec).astype(dtype))
  return np.stack(parts) if spec.layers else parts[0]


def load(
  make: Callable[[], nnx.Module],
  table: Table,
  reader: Reader,
  *,
  param_dtype: str = "float32",
  mesh: Mesh | None = None,
  ignore: Callable[[str], bool] = lambda name: False,
) -> nnx.Module:
  """The module `make()` builds, with its parameters read from `reader` through `table`.

  Each parameter is placed on the mesh (by its logical axis names, `jaxtok.sharding`) or the
  default device as soon as it is read. Every tensor of the checkpoint must be used, except
  those `ignore` names (another part of the checkpoint read separately).
  """
  abstract = nnx.eval_shape(make)
  graphdef, state = nnx.split(abstract)
  flat = dict(nnx.to_flat_state(state))
  if set(flat) != set(table):
    raise AssertionError(  # a table out of step with the model: a bug here, not bad input
      f"parameter table mismatch: no tensor for {sorted(set(flat) - set(table))[:4]}, "
      f"no parameter for {sorted(set(table) - set(flat))[:4]}"
    )
  used = {n for spec in table.values() for n in spec.names()}
  extra = sorted(n for n in reader.names() - used if not ignore(n))
  if extra:
    raise HFError(
      f"{reader.where(extra[0])}: tensor {extra[0]} (and {len(extra) - 1} more) is not part of "
      "the model its config.json describes (an unsupported variant?)"
    )
  shardings = (
    None if mesh is None else dict(nnx.to_flat_state(sharding.state_shardings(state, mesh)))
  )
  default = SingleDeviceSharding(jax.devices()[0])
  dtype = DTYPES[param_dtype]
  for path, var in flat.items():
    a = read(reader, table[path], var.shape, np.dtype(dtype))
    where = default if shardings is None else shardings[path]
    var.set_value(jax.device_put(a, where))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def tensors(model: nnx.Module, table: Table, dtype=None) -> Iterator[tuple[str, np.ndarray]]:
  """(HF name, array) of every tensor of `model`, one parameter on the host at a time."""
  flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  if set(flat) != set(table):
    raise AssertionError(
      f"parameter table mismatch: {sorted(set(flat) ^ set(table))[:4]} on one side only"
    )
  for path, var in flat.items():
    spec = table[path]
    a = np.asarray(
      jax.device_get(var.get_value() if dtype is None else var.get_value().astype(dtype))
    )
    for name, part in zip(spec.names(), a if spec.layers else [a]):
      yield name, _to_hf(part, spec)


def as_dtype(name: str | None):
  return None if name is None else jnp.dtype(DTYPES[name])
