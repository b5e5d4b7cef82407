"""Every orbax call of jaxtok lives here, so the orbax API churn stays in one place.

A checkpoint is one step directory with named items: array pytrees (params,
opt_state, ...) saved with StandardSave and small JSON items (the data
iterator position, the training phase) saved with JsonSave.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that is missing, corrupt or belongs to another model."""


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `tree`, as orbax restore targets."""

  def one(x):
    if hasattr(x, "shape") and hasattr(x, "dtype"):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
    return x

  return jax.tree.map(one, tree)


class Checkpointer:
  """Saves every `save_every` steps (or when forced), keeps the newest `max_to_keep`."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
    )
    self._mngr = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mngr.all_steps())

  def save(self, step: int, arrays: dict[str, Any], json: dict[str, Any] | None = None) -> None:
    items = {k: ocp.args.StandardSave(v) for k, v in arrays.items()}
    items.update({k: ocp.args.JsonSave(v) for k, v in (json or {}).items()})
    self._mngr.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(
    self, arrays_like: dict[str, Any], json_keys: tuple[str, ...] = (), step: int | None = None
  ) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Restores the named items into the shapes/shardings of `arrays_like`.

    Returns (step, arrays, json). Raises CheckpointError naming the directory,
    the step and the reason when the checkpoint is absent, unreadable, or of a
    model with other parameter shapes.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    items = {k: ocp.args.StandardRestore(abstract_like(v)) for k, v in arrays_like.items()}
    items.update({k: ocp.args.JsonRestore() for k in json_keys})
    try:
      out = self._mngr.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
        f"checkpoint {self.directory} step {step} does not match this model/config "
        f"(was it written by another model or config?): {e}"
      ) from e
    except Exception as e:  # orbax/tensorstore raise assorted errors on damaged files
      raise CheckpointError(
        f"checkpoint {self.directory} step {step} is unreadable "
        f"(corrupt or partially written?): {type(e).__name__}: {e}"
      ) from e
    arrays = {k: out[k] for k in arrays_like}
    _check_shapes(arrays, arrays_like, self.directory, step)
    return step, arrays, {k: out[k] for k in json_keys}

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def _check_shapes(got, want, directory, step) -> None:
  """Orbax may silently reshape or truncate; refuse anything but an exact match."""
  got_leaves = jax.tree_util.tree_leaves_with_path(got)
  want_leaves = jax.tree.leaves(want)
  if len(got_leaves) != len(want_leaves):
    raise CheckpointError(
      f"checkpoint {directory} step {step}: {len(got_leaves)} arrays, "
      f"this model has {len(want_leaves)}"
    )
  for (path, g), w in zip(got_leaves, want_leaves):
    if tuple(g.shape) != tuple(w.shape):
      raise CheckpointError(
        f"checkpoint {directory} step {step}: {jax.tree_util.keystr(path)} has shape "
        f"{tuple(g.shape)}, this model expects {tuple(w.shape)} (checkpoint of another model?)"
      )
