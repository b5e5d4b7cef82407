"""Every orbax call of jaxtok lives here, so the orbax API churn stays in one place.

A checkpoint is one step directory with named items: array pytrees (params,
opt_state, ...) saved with StandardSave, small JSON items (the data iterator
position, the training phase) saved with JsonSave, and a `manifest` item that
makes it verifiable: a checksum of every array and of every JSON item.

What is guaranteed:
* only finite arrays are saved (`NotFiniteError` otherwise, nothing written);
* older checkpoints are deleted only once a newer one has committed, so a failed
  write (disk full) never costs the previous checkpoint;
* restoring verifies shapes against the checkpoint's own metadata (another model:
  `CheckpointMismatchError`) and contents against the manifest (damaged:
  `CorruptCheckpointError`); without an explicit step, the newest checkpoint
  that restores and verifies is used and the damaged ones are reported in
  `Checkpointer.skipped` (`set_aside` moves them out of the way, never deletes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import flags as absl_flags
from etils import epath
from orbax.checkpoint._src import asyncio_utils as _orbax_asyncio  # see _drained_event_loops

from jaxtok import paths
from jaxtok.paths import copy_atomic, write_atomic  # noqa: F401  (their home before paths)

MANIFEST = "manifest"  # the JSON item holding the checksums


class CheckpointError(RuntimeError):
  """A checkpoint that is missing, corrupt, unwritable or belongs to another model."""


class CorruptCheckpointError(CheckpointError):
  """A checkpoint that cannot be read back as it was written."""


class CheckpointMismatchError(CheckpointError):
  """A readable checkpoint of another model (other arrays or shapes)."""


class CheckpointWriteError(CheckpointError):
  """Writing a checkpoint failed (disk full, directory not writable, ...)."""


class NotFiniteError(ValueError):
  """State holding NaN or Inf, refused by `Checkpointer.save`."""


class Restored(NamedTuple):
  step: int
  arrays: dict[str, Any]
  json: dict[str, Any]


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `tree`, as orbax restore targets."""

  def one(x):
    if hasattr(x, "shape") and hasattr(x, "dtype"):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
    return x

  return jax.tree.map(one, tree)


# --- verification ---------------------------------------------------------------------------


def _leaf_check(x):
  """(uint32 checksum of x's bits, position-weighted so moved data counts; all finite)."""
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  elif x.dtype.itemsize == 8:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)  # [..., 2]
  else:
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
  bits = bits.reshape(-1)
  i = jnp.arange(bits.size, dtype=jnp.uint32)
  checksum = jnp.sum((bits ^ (i * jnp.uint32(0x9E3779B9))) * (2 * i + 1), dtype=jnp.uint32)
  finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
  return checksum, finite


_check_leaves = jax.jit(lambda leaves: [_leaf_check(x) for x in leaves])


def _flat(tree: Any) -> dict[str, Any]:
  """{path: leaf} with orbax-independent path names (dict keys, attributes, indices)."""

  def name(k):
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)

  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(name(k) for k in path): x for path, x in leaves}


def array_checks(tree: Any) -> tuple[dict[str, int], list[str]]:
  """({path: checksum}, [paths of leaves holding NaN/Inf]) of a pytree of arrays."""
  flat = _flat(tree)
  results = jax.device_get(_check_leaves(list(flat.values())))
  sums = {k: int(c) for k, (c, _) in zip(flat, results)}
  return sums, [k for k, (_, ok) in zip(flat, results) if not ok]


def json_checksum(obj: Any) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# --- the checkpointer -----------------------------------------------------------------------


class Checkpointer:
  """Saves verified checkpoints, keeps the newest `max_to_keep`, restores the newest good one.

  `read_only=True` (restoring a finished workdir) never writes, not even the directory.
  """

  def __init__(
    self,
    directory: str,
    *,
    max_to_keep: int = 3,
    async_save: bool = True,
    read_only: bool = False,
  ):
    self.directory = paths.absolute(paths.check(directory, "checkpoint directory"))
    self.max_to_keep = max_to_keep
    self.read_only = read_only
    self.skipped: list[tuple[int, str]] = []  # (step, why) passed over by the last restore
    self._failed: CheckpointWriteError | None = None  # a write failed: nothing more is written
    self._mngr = None
    if read_only and not paths.isdir(self.directory):
      return  # nothing to read; creating the directory would be a write
    if jax.process_count() > 1:
      _barriers_without_devices()
    # read_only is enforced here (save refuses, close does not prune): orbax's own
    # read_only mode logs warnings on every use.
    options = ocp.CheckpointManagerOptions(
      max_to_keep=None,  # pruned here, once a newer checkpoint has committed
      create=not read_only,
      cleanup_tmp_directories=not read_only,  # half-written steps of a killed run
      enable_async_checkpointing=async_save and not read_only,
      lightweight_initialize=True,  # a damaged step must not break listing the others
    )
    self._mngr = ocp.CheckpointManager(epath.Path(self.directory), options=options)

  def latest_step(self) -> int | None:
    return self._mngr.latest_step() if self._mngr else None

  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps()) if self._mngr else []

  # --- saving ---

  def save(self, step: int, arrays: dict[str, Any], json: dict[str, Any] | None = None) -> None:
    """Starts writing checkpoint `step` (asynchronously if so configured).

    Raises NotFiniteError (nothing written) if an array holds NaN/Inf, and
    CheckpointWriteError if this or the previous write failed.
    """
    if self.read_only:
      raise CheckpointError(f"{self.directory} was opened read-only")
    if self._failed:
      raise self._failed
    json = json or {}
    manifest = {"arrays": {}, "json": {k: json_checksum(v) for k, v in json.items()}}
    for name, tree in arrays.items():
      manifest["arrays"][name], bad = array_checks(tree)
      if bad:
        raise NotFiniteError(f"{name} {bad[0]} holds NaN or Inf ({len(bad)} arrays in all)")
    self._commit_pending()
    items = {k: ocp.args.StandardSave(v) for k, v in arrays.items()}
    items.update({k: ocp.args.JsonSave(v) for k, v in json.items()})
    items[MANIFEST] = ocp.args.JsonSave(manifest)
    try:
      self._mngr.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:
      self._failed = self._write_error(step, e)
      raise self._failed from e

  def _commit_pending(self) -> None:
    """Waits for the write in flight; then deletes what is beyond `max_to_keep`."""
    pending = self._mngr.latest_step()
    try:
      self._mngr.wait_until_finished()
    except Exception as e:
      self._failed = self._write_error(pending, e)
      raise self._failed from e
    steps = self.all_steps()
    for s in steps[: max(0, len(steps) - self.max_to_keep)]:
      self._mngr.delete(s)

  def _write_error(self, step, e: Exception) -> CheckpointWriteError:
    self._mngr.reload()  # what is really on disk
    kept = [s for s in self.all_steps() if s != step]
    last = f"step {kept[-1]}" if kept else "none"
    return CheckpointWriteError(
      f"writing checkpoint step {step} in {self.directory} failed (disk full or not "
      f"writable?): {_reason(e)}. The last complete checkpoint ({last}) is kept."
    )

  # --- restoring ---

  def restore(
    self, arrays_like: dict[str, Any], json_keys: tuple[str, ...] = (), step: int | None = None
  ) -> Restored:
    """Restores the named items into the shapes/shardings/dtypes of `arrays_like`.

    With `step=None` the newest checkpoint that restores and verifies is used;
    the newer ones that did not are listed in `self.skipped` with the reason.
    Raises CheckpointMismatchError for a checkpoint of another model (no fallback:
    an older one would not fit either) and CorruptCheckpointError when none restores.
    """
    self.skipped = []
    steps = [step] if step is not None else self.all_steps()[::-1]
    if not steps or (step is not None and step not in self.all_steps()):
      raise CheckpointError(
        f"no checkpoint{'' if step is None else f' at step {step}'} in {self.directory}"
      )
    for s in steps:
      try:
        with _drained_event_loops():
          return self._restore_step(s, arrays_like, json_keys)
      except CorruptCheckpointError as e:
        if step is not None:
          raise
        self.skipped.append((s, str(e)))
    raise CorruptCheckpointError(
      f"no checkpoint in {self.directory} restores: " + "; ".join(why for _, why in self.skipped)
    )

  def _restore_step(self, step: int, arrays_like: dict[str, Any], json_keys) -> Restored:
    where = f"checkpoint {self.directory} step {step}"
    saved = {k: self._saved_arrays(step, k, where) for k in arrays_like}
    for k, like in arrays_like.items():
      _check_same_arrays(k, saved[k], _flat(like), where)
    targets = {k: _with_dtypes(v, saved[k]) for k, v in arrays_like.items()}
    has_manifest = paths.isdir(paths.join(self.directory, str(step), MANIFEST))
    json_items = (*json_keys, MANIFEST) if has_manifest else tuple(json_keys)
    items = {k: ocp.args.StandardRestore(v) for k, v in targets.items()}
    items.update({k: ocp.args.JsonRestore() for k in json_items})
    try:
      out = self._mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax/tensorstore raise assorted errors on damaged files
      raise CorruptCheckpointError(
        f"{where} is unreadable (damaged or partly written): {_reason(e)}"
      ) from e
    arrays = {k: out[k] for k in arrays_like}
    js = {k: out[k] for k in json_keys}
    manifest = out[MANIFEST] if has_manifest else None
    _verify(arrays, js, manifest, where)
    cast = lambda x, like: x if x.dtype == like.dtype else x.astype(like.dtype)
    arrays = {k: jax.tree.map(cast, v, abstract_like(arrays_like[k])) for k, v in arrays.items()}
    return Restored(step, arrays, js)

  def _saved_arrays(self, step: int, item: str, where: str) -> dict[str, Any]:
    """{path: array metadata} of an item as written; corrupt if that cannot be read."""
    path = epath.Path(self.directory) / str(step) / item
    try:
      meta = ocp.StandardCheckpointHandler().metadata(path)
      return _flat(getattr(meta, "tree", meta))
    except Exception as e:
      raise CorruptCheckpointError(
        f"{where}: the metadata of {item!r} is unreadable (damaged or partly written): {_reason(e)}"
      ) from e

  def reload(self) -> None:
    """Re-reads the steps on disk (after another process moved or wrote some)."""
    if self._mngr is not None:
      self._mngr.reload()

  def set_aside(self, step: int) -> str:
    """Moves a damaged step out of the checkpoint directory (never deletes it); its new path."""
    dest_root = self.directory + ".damaged"
    dest = paths.join(dest_root, f"{step}.{time.strftime('%Y%m%d-%H%M%S')}")
    src = paths.join(self.directory, str(step))
    if paths.is_url(dest_root):
      # An object store has no empty folders, and epath's rename wants the target's to exist.
      paths.write_atomic(paths.join(dest_root, "README"), "damaged checkpoint steps\n")
      # A copy, then a delete there: not atomic, but what an interruption leaves is a step
      # that fails verification again, never a deleted one.
      epath.Path(src).rename(dest)
    else:
      os.makedirs(dest_root, exist_ok=True)
      os.replace(src, dest)
    self._mngr.reload()
    return dest

  def close(self) -> None:
    """Waits for the write in flight, prunes, and releases orbax's threads."""
    if self._mngr is None:
      return
    try:
      if not (self.read_only or self._failed):
        self._commit_pending()
    finally:
      try:
        self._mngr.close()
      except Exception:
        if not self._failed:
          raise  # after a failed write orbax re-raises it here; it was reported already
      self._mngr = None  # closing twice is a no-op


def _barriers_without_devices() -> None:
  """Makes orbax wait for the other processes at the JAX distributed client's barriers.

  Orbax's default barrier is a device collective (`sync_global_devices`) that it also runs
  from its background threads (metadata, async-save finalisation). Next to the training
  step's own collectives, two processes then enqueue collectives in different orders and
  deadlock (2 CPU processes hung in their first steps, or at the first evaluation after a
  save). The client's barriers involve no device. Set like a command-line flag, so it holds
  also where absl has not parsed flags.
  """
  flag = absl_flags.FLAGS["experimental_orbax_use_distributed_barrier"]
  flag.value, flag.present = True, 1


def _check_same_arrays(item: str, saved: dict, want: dict, where: str) -> None:
  """Orbax may silently reshape or truncate; refuse anything but the same arrays and shapes."""
  missing, extra = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
  if missing or extra:
    raise CheckpointMismatchError(
      f"{where} holds other {item} arrays (written by another model or config?): "
      f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
      f"not in this model {extra[:3]}{'...' if len(extra) > 3 else ''}"
    )
  for k, w in want.items():
    if tuple(saved[k].shape) != tuple(w.shape):
      raise CheckpointMismatchError(
        f"{where}: {item} {k} has shape {tuple(saved[k].shape)}, this model expects "
        f"{tuple(w.shape)} (written by another model or config?)"
      )


def _with_dtypes(like: Any, saved: dict[str, Any]) -> Any:
  """Restore targets in the dtypes the checkpoint holds (checksums are of those bits)."""
  flat = _flat(like)
  leaves = [
    jax.ShapeDtypeStruct(x.shape, saved[k].dtype, sharding=getattr(x, "sharding", None))
    for k, x in flat.items()
  ]
  return jax.tree.unflatten(jax.tree.structure(like), leaves)


def _verify(arrays: dict, js: dict, manifest: dict | None, where: str) -> None:
  for item, tree in arrays.items():
    sums, bad = array_checks(tree)
    want = (manifest or {}).get("arrays", {}).get(item, {})
    wrong = [k for k, c in sums.items() if k in want and want[k] != c]
    if wrong or bad:
      what = f"checksum mismatch in {wrong[0]}" if wrong else f"NaN/Inf in {bad[0]}"
      raise CorruptCheckpointError(f"{where} is damaged: {item}: {what}")
  for k, v in js.items():
    want = (manifest or {}).get("json", {}).get(k)
    if want is not None and want != json_checksum(v):
      raise CorruptCheckpointError(f"{where} is damaged: checksum mismatch in {k!r}")


def _reason(e: BaseException, limit: int = 300) -> str:
  """The root cause of an orbax error, on one line (orbax's own wrapper says little)."""
  while e.__cause__ is not None or (e.__context__ is not None and not e.__suppress_context__):
    e = e.__cause__ or e.__context__
  s = " ".join(str(e).split())
  return f"{type(e).__name__}: {s if len(s) <= limit else s[:limit] + ' ...'}"


@contextlib.contextmanager
def _drained_event_loops():
  """Makes orbax finish the reads it started before it closes their event loop.

  Orbax runs each restore in a fresh event loop and closes it as soon as one read fails,
  with the reads of the other arrays still in flight; each of those then reports "Event
  loop is closed" or "Task exception was never retrieved" when it finishes: dozens of
  tracebacks, printed after, and burying, the error the caller got. This swaps orbax's
  loop runner (a private function; if it is gone, nothing is swapped) for one that awaits
  the pending tasks before closing the loop.
  """
  original = getattr(_orbax_asyncio, "_run_sync_via_new_loop", None)
  if original is None:
    yield
    return
  _orbax_asyncio._run_sync_via_new_loop = _run_sync_draining
  try:
    yield
  finally:
    _orbax_asyncio._run_sync_via_new_loop = original


def _run_sync_draining(coro):
  loop = asyncio.new_event_loop()
  tasks = []

  def factory(loop, coro, **kw):
    tasks.append(asyncio.Task(coro, loop=loop, **kw))
    return tasks[-1]

  loop.set_task_factory(factory)
  try:
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(coro)
  finally:
    # Only after a failure is anything left: the other reads' errors are the same damage,
    # already raised, so they are awaited and marked as seen.
    pending = [t for t in tasks if not t.done()]
    if pending:
      loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for t in tasks:
      if not t.cancelled():
        t.exception()
    asyncio.set_event_loop(None)
    loop.close()
