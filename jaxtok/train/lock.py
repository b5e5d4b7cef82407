"""One writer per workdir: an advisory lock file that names its owner.

`fcntl.flock` is released by the kernel when its process dies, however it dies,
so a lock is never stale as such; what a crashed owner leaves behind is its
name in the file, which the next owner reports ("taking over from pid ...").
A clean release empties the file. The file itself is never deleted while in
use: a deleted, re-created lock file would let two processes hold "the" lock.

A URL workdir (gs://) has no flock: its lock is an object naming its owner,
created if absent and deleted on release. Its limits: it is best effort, not
atomic (two runs starting in the same second can both read "absent"; a read-back
after writing catches most such races, not all), and a run that is killed, or whose
VM is preempted, leaves its lock behind. A lock left by a dead process of this
host is taken over; one of another host cannot be checked, and the error names
the lock object to delete once that run is known to be gone.
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

from jaxtok import paths

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
  if paths.is_url(workdir):
    with _object_lock(paths.check(workdir), report):
      yield
    return
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


@contextlib.contextmanager
def _object_lock(workdir: str, report) -> Iterator[None]:
  """The lock of a workdir on an object store (see the module docstring for its limits)."""
  path = paths.join(workdir, LOCK_FILE)
  if paths.exists(path):
    previous = paths.read_text(path)
    if previous.strip():
      if _alive_elsewhere(previous):
        raise WorkdirBusyError(
          f"{workdir} is in use by {_describe(previous)}; wait for it to finish or stop it, or "
          f"use another --workdir. If that run is gone (killed, its VM preempted), delete "
          f"{path}: the lock of a URL workdir is an object that a killed run leaves behind"
        )
      report(f"{workdir}: taking over the lock of {_describe(previous)}, which has exited")
  mine = json.dumps(_owner()) + "\n"
  paths.write_atomic(path, mine)
  time.sleep(0.5)  # a run that read "absent" at the same time has written by now
  if paths.read_text(path) != mine:
    raise WorkdirBusyError(
      f"{workdir} was taken by {_describe(paths.read_text(path))} while this run locked it"
    )
  try:
    yield
  finally:
    # Released: nothing to report to the next owner. A workdir this call created that holds
    # nothing else is gone with it (an object store has no empty folders).
    paths.unlink(path)


def _alive_elsewhere(text: str) -> bool:
  """Whether a lock's owner may live: on this host, its pid runs; elsewhere, unknown (yes)."""
  try:
    o = json.loads(text)
    host, pid = o["host"], int(o["pid"])
  except (ValueError, KeyError, TypeError):
    return False  # torn or foreign content: no owner to wait for
  if host != socket.gethostname():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True
