"""A direct reader of GGUF files: metadata and (dequantized) tensors.

`gguf.GGUFReader` builds a numpy view per metadata string and takes seconds on
a 50k-token vocabulary; parsing the header here takes milliseconds. Tensors
are dequantized with the `gguf` package's numpy kernels.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct

import numpy as np

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS.update({11: "<q", 12: "<d"})
_DEFAULT_ALIGNMENT = 32


class GGUFError(ValueError):
  """A file that is not GGUF, truncated, or uses a feature this reader lacks."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  name: str
  shape: tuple[int, ...]  # numpy order (GGUF lists dimensions fastest first)
  qtype: int
  offset: int  # absolute byte offset in the file


class _Header:
  def __init__(self, path: str, buf):
    self.path, self.buf = path, buf

  def string(self, pos: int) -> tuple[str, int]:
    n = struct.unpack_from("<Q", self.buf, pos)[0]
    return bytes(self.buf[pos + 8 : pos + 8 + n]).decode("utf-8", errors="replace"), pos + 8 + n

  def value(self, ty: int, pos: int):
    if ty == 8:
      return self.string(pos)
    if ty == 9:
      ety, n = struct.unpack_from("<IQ", self.buf, pos)
      pos += 12
      if ety in _SCALARS and ety != 7:
        dt = np.dtype(_SCALARS[ety])
        arr = np.frombuffer(self.buf, dt, count=n, offset=pos)
        return arr.tolist(), pos + n * dt.itemsize
      out = []
      for _ in range(n):
        v, pos = self.value(ety, pos)
        out.append(v)
      return out, pos
    if ty not in _SCALARS:
      raise GGUFError(f"{self.path}: unknown GGUF value type {ty}")
    fmt = _SCALARS[ty]
    return struct.unpack_from(fmt, self.buf, pos)[0], pos + struct.calcsize(fmt)


def _parse(path: str, buf, prefix: str, with_tensors: bool):
  if bytes(buf[:4]) != b"GGUF":
    raise GGUFError(f"{path} is not a GGUF file (bad magic {bytes(buf[:4])!r})")
  version = struct.unpack_from("<I", buf, 4)[0]
  if version < 2:
    raise GGUFError(f"{path}: GGUF version {version} is not supported (need >= 2)")
  n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
  h = _Header(path, buf)
  pos = 24
  meta, alignment = {}, _DEFAULT_ALIGNMENT
  try:
    for _ in range(n_kv):
      key, pos = h.string(pos)
      ty = struct.unpack_from("<I", buf, pos)[0]
      val, pos = h.value(ty, pos + 4)
      if key == "general.alignment":
        alignment = int(val)
      if key.startswith(prefix):
        meta[key[len(prefix) :]] = val
    if not with_tensors:
      return meta, []
    raw = []
    for _ in range(n_tensors):
      name, pos = h.string(pos)
      n_dims = struct.unpack_from("<I", buf, pos)[0]
      dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
      qtype, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
      pos += 4 + 8 * n_dims + 12
      raw.append((name, tuple(reversed(dims)), qtype, offset))
  except struct.error as e:
    raise GGUFError(f"{path}: truncated or corrupt GGUF header: {e}") from e
  start = -(-pos // alignment) * alignment
  return meta, [TensorInfo(n, s, q, start + o) for n, s, q, o in raw]


def read_metadata(path: str, prefix: str = "") -> dict:
  """The key/value metadata of a GGUF file (keys starting with `prefix`, prefix removed)."""
  with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
    return _parse(path, mm, prefix, with_tensors=False)[0]


class GGUFFile:
  """Metadata and tensors of a GGUF file, memory-mapped; `tensor(name)` dequantizes to f32."""

  def __init__(self, path: str):
    self.path = path
    with open(path, "rb") as fh:
      self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    self.metadata, infos = _parse(path, self._mm, "", with_tensors=True)
    self.tensors = {t.name: t for t in infos}

  def tensor(self, name: str) -> np.ndarray:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    if name not in self.tensors:
      raise GGUFError(f"{self.path} has no tensor {name!r}")
    t = self.tensors[name]
    qtype = GGMLQuantizationType(t.qtype)
    block, nbytes = GGML_QUANT_SIZES[qtype]
    row = t.shape[-1]
    if row % block:
      raise GGUFError(f"{self.path}: tensor {name} rows of {row} are not whole {qtype.name} blocks")
    rows = int(np.prod(t.shape[:-1], dtype=np.int64))
    size = rows * (row // block) * nbytes
    data = np.frombuffer(self._mm, np.uint8, count=size, offset=t.offset)
    out = dequantize(data.reshape(rows, -1), qtype)
    return np.array(out, np.float32).reshape(t.shape)  # a copy: the mmap may close

  def close(self) -> None:
    self._mm.close()
