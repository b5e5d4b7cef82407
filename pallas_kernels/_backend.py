"""What every kernel here needs to know about where it runs.

One kernel body serves three targets, chosen from the default JAX backend at
trace time (or forced with `backend=` so tests can lower for TPU and GPU on a
CPU-only machine):
  cpu -> `interpret=True` (Pallas' HLO interpreter: correctness only);
  tpu -> Mosaic TPU; per-block scalar tables live in SMEM;
  gpu -> Triton (`pallas.triton.CompilerParams`). The kernels loop over key
         blocks inside one program, the layout the Triton backend wants; a
         Mosaic GPU port (warpgroup pipelines) is not written yet.
"""

from __future__ import annotations

import jax
from jax.experimental import pallas as pl
from jax.sharding import PartitionSpec as P

from jaxtok import sharding as shd

BACKENDS = ("cpu", "tpu", "gpu")


def resolve(backend: str | None) -> str:
  backend = jax.default_backend() if backend is None else backend
  if backend not in BACKENDS:
    raise ValueError(f"Pallas backend must be one of {BACKENDS}, got {backend!r}")
  return backend


def call_kwargs(backend: str) -> dict:
  """`pallas_call` keyword arguments that pick the compiler (or the interpreter)."""
  if backend == "cpu":
    return dict(interpret=True)
  if backend == "gpu":
    from jax.experimental.pallas import triton as pltriton

    return dict(compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=2))
  return {}


def table_spec(backend: str) -> pl.BlockSpec:
  """A whole small int32 table (B x n) that kernels read as scalars: in SMEM on TPU."""
  if backend == "tpu":
    from jax.experimental.pallas import tpu as pltpu

    return pl.BlockSpec(memory_space=pltpu.SMEM)
  return pl.BlockSpec()


def round_up(x: int, m: int) -> int:
  return -(-x // m) * m


def block_size(want: int, length: int, backend: str) -> int:
  """A block no longer than the (rounded-up) sequence.

  Multiples of 8 keep TPU's (8, 128) tiling legal when the block is the whole
  padded axis; Triton needs powers of two of at least 16.
  """
  if backend == "gpu":
    return min(want, max(16, pl.next_power_of_2(length)))
  return min(want, round_up(length, 8))


def per_shard(fn, in_names, out_names):
  """`fn`, run under `jax.shard_map` when an ambient mesh (`jax.set_mesh`) has
  more than one device; `fn` itself otherwise.

  `in_names`/`out_names` give every array's logical axis names (None: not
  split), mapped to mesh axes by `jaxtok.sharding.RULES`. A name whose mesh
  axes do not divide all of its dimensions stays whole. A kernel is opaque to
  XLA's partitioner, which would otherwise gather its operands to every device.
  """

  def run(*args):
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
      return fn(*args)
    dims: dict[str, list[int]] = {}
    for names, x in zip(in_names, args):
      for name, dim in zip(names, x.shape):
        if name is not None:
          dims.setdefault(name, []).append(dim)
    axes = {name: _fit(shd.logical_to_mesh((name,))[0], ds, mesh) for name, ds in dims.items()}
    spec = lambda names: P(*(None if n is None else axes.get(n) for n in names))
    out_specs = tuple(map(spec, out_names)) if isinstance(out_names, list) else spec(out_names)
    return jax.shard_map(
      fn, mesh=mesh, in_specs=tuple(map(spec, in_names)), out_specs=out_specs, check_vma=False
    )(*args)

  return run


def _fit(axes, dims: list[int], mesh):
  """The mesh axes among `axes` that `mesh` has, if together they divide every dim."""
  axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
  axes = tuple(a for a in axes if a in mesh.axis_names and mesh.shape[a] > 1)
  size = 1
  for a in axes:
    size *= mesh.shape[a]
  return axes if axes and all(d % size == 0 for d in dims) else None
