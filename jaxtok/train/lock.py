"""One writer per workdir: an advisory lock file that names its owner.

`fcntl.flock` is released by the kernel when its process dies, however it dies,
so a lock is never stale as such; what a crashed owner leaves behind is its
name in the file, which the next owner reports ("taking over from pid ...").
A clean release empties the file. The file itself is never deleted while in
use: a deleted, re-created lock file would let two processes hold "the" lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

LOCK_FILE = ".lock"


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir."""


def _owner() -> dict:
  return {
    "pid": os.getpid(),
    "host": socket.gethostname(),
    "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    "argv": " ".join(sys.argv)[:500],
  }


def _describe(text: str) -> str:
  try:
    o = json.loads(text)
    return f"pid {o['pid']} on {o['host']} (since {o['since']}: {o['argv']})"
  except (ValueError, KeyError, TypeError):
    return repr(text[:200])


@contextlib.contextmanager
def locked(workdir: str, *, report=print) -> Iterator[None]:
  """Holds `workdir`'s lock for the block; WorkdirBusyError if another process has it.

  A workdir this call created is removed again if the block fails while it
  holds nothing but the lock file (a run refused at start-up leaves no trace).
  """
  created = not os.path.exists(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirBusyError(
        f"{workdir} is in use by {_describe(_read(fd))}; wait for it to finish or stop it "
        f"(a lock is released when its process exits), or use another --workdir"
      ) from None
    previous = _read(fd)
    if previous.strip():
      report(f"{workdir}: taking over the lock of {_describe(previous)}, which has exited")
    _write(fd, json.dumps(_owner()) + "\n")
    try:
      yield
    except BaseException:
      if created and os.listdir(workdir) == [LOCK_FILE]:
        os.unlink(path)
        os.rmdir(workdir)
      raise
    finally:
      if os.path.exists(path):
        _write(fd, "")  # released cleanly: nothing to report to the next owner
  finally:
    os.close(fd)  # also releases the flock


def _read(fd: int) -> str:
  os.lseek(fd, 0, os.SEEK_SET)
  return os.read(fd, 4096).decode(errors="replace")


def _write(fd: int, text: str) -> None:
  os.ftruncate(fd, 0)
  os.pwrite(fd, text.encode(), 0)
  os.fsync(fd)
