"""Workdir paths: local directories or URLs (`gs://bucket/run`), one set of functions for both.

Local paths keep the os functions and their behaviour (`~` expanded, made
absolute where a path is recorded; atomic writes through a temporary file and
`os.replace`). URLs go through `etils.epath`, never through `os.path`, which
would turn `gs://bucket/run` into the local directory `./gs:/bucket/run`.
A `file://` URL is a local path.

Which URLs: epath opens gs://, s3://, az:// and hf://, but orbax (the checkpoint
writer, through tensorstore) writes arrays to local paths and gs:// only, so a
workdir, which holds checkpoints, is local or gs://.
"""

from __future__ import annotations

import os
import posixpath
import tempfile

from etils import epath

WORKDIR_SCHEMES = ("gs",)  # URLs a workdir may have: orbax checkpoints there
EPATH_SCHEMES = ("gs", "s3", "az", "hf")  # what etils.epath opens


class UnsupportedPathError(ValueError):
  """A path given as a URL of a scheme that jaxtok cannot write a workdir to."""


def is_url(path) -> bool:
  return "://" in os.fspath(path)


def check(path: str, what: str = "--workdir") -> str:
  """`path` in the form the other functions take; UnsupportedPathError naming `what` for a URL
  that cannot hold a workdir."""
  path = os.fspath(path)
  if path.startswith("file://"):
    return path[len("file://") :] or "/"
  if not is_url(path):
    return path
  scheme = path.split("://", 1)[0]
  if scheme not in WORKDIR_SCHEMES:
    why = (
      "orbax, which writes the checkpoints, supports local paths and gs:// only"
      if scheme in EPATH_SCHEMES
      else f"etils.epath opens {', '.join(s + '://' for s in EPATH_SCHEMES)} only"
    )
    raise UnsupportedPathError(
      f"{what}={path!r}: {scheme}:// is not supported ({why}); use a local path or a "
      "gs://bucket/... URL"
    )
  return path.rstrip("/")


def expand(path: str, what: str = "--workdir") -> str:
  """A local path with `~` expanded (a URL as it is)."""
  path = check(path, what)
  return path if is_url(path) else os.path.expanduser(path)


def absolute(path: str) -> str:
  """The absolute form of a local path (`~` expanded); a URL as it is."""
  path = expand(path)
  return path if is_url(path) else os.path.abspath(path)


def join(base: str, *parts: str) -> str:
  return posixpath.join(base, *parts) if is_url(base) else os.path.join(base, *parts)


def as_epath(path: str) -> epath.Path:
  return epath.Path(check(path))


def exists(path: str) -> bool:
  return as_epath(path).exists() if is_url(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return as_epath(path).is_dir() if is_url(path) else os.path.isdir(path)


def listdir(path: str) -> list[str]:
  return [p.name for p in as_epath(path).iterdir()] if is_url(path) else os.listdir(path)


def makedirs(path: str) -> None:
  if is_url(path):
    as_epath(path).mkdir(parents=True, exist_ok=True)  # object stores: a no-op, or a marker
  else:
    os.makedirs(path, exist_ok=True)


def read_bytes(path: str) -> bytes:
  if is_url(path):
    return as_epath(path).read_bytes()
  with open(path, "rb") as f:
    return f.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode()


def unlink(path: str) -> None:
  if is_url(path):
    as_epath(path).unlink(missing_ok=True)
  elif os.path.exists(path):
    os.unlink(path)


def write_atomic(path: str, data: str | bytes) -> None:
  """Writes a file so that readers (and a later crash) see the old or the new content only.

  Local: a temporary file in the same directory, fsynced, then `os.replace`. gs://
  (the only URL scheme `check` lets through): one direct write, since a GCS object
  becomes visible only once its upload completes, whole; a temporary name and a
  rename would be a second copy there, and no more atomic.
  """
  data = data.encode() if isinstance(data, str) else data
  if is_url(path):
    p = as_epath(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
  try:
    os.fchmod(fd, _file_mode(path))  # mkstemp's 0600 would hide a shared workdir's files
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _file_mode(path: str) -> int:
  if os.path.exists(path):
    return os.stat(path).st_mode & 0o777
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def copy_atomic(src: str, dst: str) -> None:
  write_atomic(dst, read_bytes(src))
