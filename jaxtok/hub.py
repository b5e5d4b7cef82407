"""`hf:` specs and Hugging Face hub ids -> local directories.

A spec is `hf:<hub id or directory>` (the prefix is optional where only HF
layouts are read). A directory is used as it is; a hub id ("org/name",
optionally "org/name@revision") goes through `huggingface_hub`'s cache: the
cached snapshot is used when there is one (so a cached model works offline,
and with HF_HUB_OFFLINE=1), otherwise it is downloaded.
"""

from __future__ import annotations

import os

import huggingface_hub

PREFIX = "hf:"
# Files a checkpoint directory needs; weights in other formats (.bin, .pth) are not read.
PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt")


class HubError(FileNotFoundError):
  """A spec that is neither a directory nor a hub id that can be found or fetched."""


def is_spec(spec: str) -> bool:
  return spec.startswith(PREFIX)


def strip(spec: str) -> str:
  return spec[len(PREFIX) :] if is_spec(spec) else spec


def resolve(spec: str, patterns=PATTERNS) -> str:
  """The local directory of `spec`: a directory, or a hub id's cached (or fetched) snapshot."""
  name = os.path.expanduser(strip(spec))
  if os.path.isdir(name):
    return name
  if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
    raise HubError(f"{spec}: not a checkpoint directory, nor a hub id (org/name or name)")
  repo, _, revision = name.partition("@")
  kw = dict(repo_id=repo, revision=revision or None, allow_patterns=list(patterns))
  try:
    return huggingface_hub.snapshot_download(local_files_only=True, **kw)
  except Exception:  # not cached (or incompletely): fetch, unless offline
    pass
  try:
    return huggingface_hub.snapshot_download(**kw)
  except Exception as e:
    raise HubError(
      f"{spec}: hub id {repo!r} is not in the local cache "
      f"({huggingface_hub.constants.HF_HUB_CACHE}) and could not be fetched: "
      f"{type(e).__name__}: {e}"
    ) from e
