"""The multi-process runtime: starting it, and what the processes of a job agree on.

A job on several hosts (a TPU pod, GPU nodes) runs one process per host (or per GPU),
all running the same program. `initialize` starts JAX's distributed runtime before any
computation, from explicit settings, from environment variables, or from what JAX
detects itself (Cloud TPU pods, SLURM, Open MPI, Kubernetes). The other functions are
the few host-side agreements the trainer needs: gather a small JSON value from every
process, agree on a count, wait at a barrier.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

MODES = ("auto", "on", "off")
# Environment variables read when a setting is not given (JAX itself reads the first).
ENV = {
  "coordinator_address": "JAX_COORDINATOR_ADDRESS",
  "num_processes": "JAX_NUM_PROCESSES",
  "process_id": "JAX_PROCESS_ID",
}


class DistributedError(ValueError):
  """Distributed settings that cannot work; the message names the flag."""


def _setting(name: str, given):
  if given is not None:
    return given
  value = os.environ.get(ENV[name])
  if value is None or value == "":
    return None
  if name == "coordinator_address":
    return value
  try:
    return int(value)
  except ValueError:
    raise DistributedError(f"${ENV[name]}={value!r} is not an integer") from None


def cluster_detected() -> bool:
  """Whether JAX's own cluster detection recognises this environment (TPU pod, SLURM, ...)."""
  try:
    from jax._src.clusters import ClusterEnv  # not public; detection is what JAX would do
  except ImportError:  # pragma: no cover - a JAX without it: nothing auto-detected
    return False
  return any(
    env.is_env_present() for env in ClusterEnv._cluster_types if not env.opt_in_only_method
  )


def initialize(
  mode: str = "auto",
  *,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> bool:
  """Starts `jax.distributed` when asked or detected; returns whether it is running.

  `mode`: "off" never starts it; "on" always does (what is not given is auto-detected
  by JAX, which fails off a cluster); "auto" starts it when a coordinator address is
  given (flag or $JAX_COORDINATOR_ADDRESS) or JAX detects a cluster. Settings not
  given are read from $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID.
  Must run before any computation (JAX refuses it afterwards).
  """
  if mode not in MODES:
    raise DistributedError(f"--distributed={mode!r}: one of {MODES}")
  if jax.distributed.is_initialized():
    return True
  if mode == "off":
    return False
  address = _setting("coordinator_address", coordinator_address)
  count = _setting("num_processes", num_processes)
  index = _setting("process_id", process_id)
  if mode == "auto" and address is None and not cluster_detected():
    if count not in (None, 1) or index not in (None, 0):
      raise DistributedError(
        f"--num_processes={count} / --process_id={index} need --coordinator_address "
        f"(or ${ENV['coordinator_address']}): the address and port of process 0"
      )
    return False
  if count is not None and index is not None and not 0 <= index < count:
    raise DistributedError(f"--process_id={index} must be in [0, --num_processes={count})")
  jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
  return True


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def allgather_json(value: Any) -> list[Any]:
  """`value` (JSON-serialisable) of every process, in process order; a collective."""
  if not is_multiprocess():
    return [value]
  data = np.frombuffer(json.dumps(value, sort_keys=True).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.asarray([data.size], np.int64))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[: data.size] = data
  every = multihost_utils.process_allgather(padded)
  return [json.loads(bytes(row[: int(n)]).decode()) for row, n in zip(every, sizes.reshape(-1))]


def agree_max(n: int) -> int:
  """The largest `n` over all processes; a collective."""
  return max(allgather_json(int(n)))


def barrier(name: str) -> None:
  """Waits until every process gets here (no-op with one process)."""
  if is_multiprocess():
    multihost_utils.sync_global_devices(name)
