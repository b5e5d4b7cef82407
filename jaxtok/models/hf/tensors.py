"""Directories in the Hugging Face layout: config.json + safetensors, read lazily, written whole.

Reading opens each safetensors file once and hands out one tensor at a time
(numpy, in the file's dtype), so a loader holds at most the tensors of the
parameter it is building. Writing streams tensors into shards of at most
`shard_bytes` inside a temporary directory next to the destination, which is
renamed into place only when every file is complete: an interrupted or failed
export leaves nothing under the destination's name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
SHARD_BYTES = 5 << 30  # transformers' default shard size


class HFError(ValueError):
  """A Hugging Face checkpoint that cannot be read or written; names the file and tensor."""


def read_config(directory: str) -> dict:
  path = os.path.join(directory, CONFIG)
  if not os.path.exists(path):
    raise HFError(f"{directory}: no {CONFIG}, so not a checkpoint in the Hugging Face layout")
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise HFError(f"{path}: not valid JSON: {e}") from e


class Reader:
  """The tensors of a checkpoint directory (one safetensors file, or shards and their index)."""

  def __init__(self, directory: str):
    self.directory = directory
    index = os.path.join(directory, INDEX)
    if os.path.exists(index):
      with open(index) as f:
        self._file = dict(json.load(f)["weight_map"])
      for shard in sorted(set(self._file.values())):
        if not os.path.exists(os.path.join(directory, shard)):
          raise HFError(f"{index} lists shard {shard}, which is missing from {directory}")
    elif os.path.exists(os.path.join(directory, SINGLE)):
      with safe_open(os.path.join(directory, SINGLE), "np") as f:
        self._file = {name: SINGLE for name in f.keys()}
    else:
      raise HFError(f"{directory}: no {SINGLE} or {INDEX} (only safetensors weights are read)")
    self._open: dict[str, object] = {}

  def names(self) -> set[str]:
    return set(self._file)

  def where(self, name: str) -> str:
    return os.path.join(self.directory, self._file.get(name, INDEX))

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._handle(name).get_slice(name).get_shape())

  def get(self, name: str) -> np.ndarray:
    return self._handle(name).get_tensor(name)

  def _handle(self, name: str):
    if name not in self._file:
      raise HFError(f"{self.directory}: tensor {name} is missing from the checkpoint")
    file = self._file[name]
    if file not in self._open:
      self._open[file] = safe_open(os.path.join(self.directory, file), "np")
    return self._open[file]

  def close(self) -> None:
    self._open.clear()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def write(
  out_dir: str,
  tensors: Iterable[tuple[str, np.ndarray]],
  files: dict[str, str | bytes],
  *,
  shard_bytes: int = SHARD_BYTES,
) -> str:
  """Writes `files` (name -> contents) and `tensors` as `out_dir`, atomically; returns it.

  `out_dir` must not exist or be empty: nothing already there is overwritten.
  """
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise HFError(f"{out_dir} already exists and is not empty: choose a new output directory")
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
  try:
    for name, content in files.items():
      mode = "wb" if isinstance(content, bytes) else "w"
      with open(os.path.join(tmp, name), mode) as f:
        f.write(content)
    _write_shards(tmp, tensors, shard_bytes)
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # empty (checked above)
    os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


def _write_shards(tmp: str, tensors, shard_bytes: int) -> None:
  shards: list[list[str]] = []
  pending: dict[str, np.ndarray] = {}
  seen: set[str] = set()
  size = total = 0

  def flush():
    nonlocal pending, size
    if pending:
      save_file(pending, os.path.join(tmp, f"shard-{len(shards)}"), metadata={"format": "pt"})
      shards.append(list(pending))
      pending, size = {}, 0

  for name, a in tensors:
    if name in seen:
      raise HFError(f"tensor {name} written twice")
    seen.add(name)
    a = np.ascontiguousarray(a)
    if pending and size + a.nbytes > shard_bytes:
      flush()
    pending[name] = a
    size += a.nbytes
    total += a.nbytes
  flush()
  if len(shards) == 1:
    os.rename(os.path.join(tmp, "shard-0"), os.path.join(tmp, SINGLE))
    return
  weight_map = {}
  for i, names in enumerate(shards):
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    os.rename(os.path.join(tmp, f"shard-{i}"), os.path.join(tmp, file))
    weight_map.update({n: file for n in names})
  with open(os.path.join(tmp, INDEX), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
