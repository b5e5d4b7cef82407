"""Preparing a run, once, before it trains: everything a task needs from the data.

`prepare(config, workdir)` returns the resolved config that the run trains
with and writes into its workdir (`config.json`), so that building the task or
restoring the workdir later never opens a corpus:

* a tokenizer spec (`data.tokenizer`: "bpe:<vocab>" trains a byte-level BPE on
  `data.tokenizer_docs` training documents, cached; or a tokenizer file) is
  copied into the workdir (`data.tokenizer_file`), and the vocabulary size
  (`model.vocab_size`) and bytes per token (`data.bytes_per_token`) recorded;
* a BLT's mean bytes per patch (`patching.bytes_per_patch`, for FLOP
  accounting) is measured on training batches, and precomputed entropies
  (`patching.entropies=precomputed`) are computed if missing (`patching.entropy_store`);
* a ZeTT run gets its base workdir, its evaluation tokenizers (trained or
  fetched once, copied into the workdir: `eval.tokenizer_files`) and, with
  `data.mix`, its mixed-language training text (`jaxtok.train.zett.prepare`).

On resume, what the workdir already recorded is reused, not recomputed, and
the workdir's files are the truth: a config whose tokenizer differs from the
workdir's `tokenizer.json`, or (once the workdir holds checkpoints) whose
model, data stream or patching differ from its `config.json`, is refused
before anything is written.
"""

from __future__ import annotations

import copy
import json
import os

from jaxtok import paths
from jaxtok.configlib import ConfigError
from jaxtok.data import corpora, packing
from jaxtok.models import entropy_model
from jaxtok.models import workdir as workdir_lib
from jaxtok.patching.config import PatchingConfig
from jaxtok.patching.entropy import precompute, store_dir
from jaxtok.paths import copy_atomic
from jaxtok.tokenizers import bpe
from jaxtok.tokenizers.byte_view import sidecar_path
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.train import zett
from jaxtok.train.blt_task import (
  BLTBatches,
  blt_encode_fn,
  entropy_store_paths,
  measure_bytes_per_patch,
)


def prepare(config, workdir: str):
  """The resolved copy of `config` for a run in `workdir` (see the module docstring)."""
  stored_path = paths.join(workdir, workdir_lib.CONFIG_FILE)
  stored = workdir_lib.load_config(workdir) if paths.exists(stored_path) else None
  config = copy.deepcopy(config)
  name = config.model.get("name", "transformer")
  with config.unlocked():
    if config.data.get("tokenizer"):
      _tokenizer(config, workdir, stored)
    if name == "hypernet":  # resolves data.name (data.mix), compared below as stored
      _zett(config, workdir)
    if stored is not None and workdir_lib.has_checkpoint(workdir):
      check_same_run(config, stored, workdir)
    if name == "blt":
      _patching(config, stored)
  return config


def prerequisites(config, workdir: str) -> list[tuple[object, str]]:
  """(config, workdir) of runs that must finish before this one: a ZeTT base LM to train."""
  b = config.get("base")
  if config.model.get("name") != "hypernet" or b.kind != "jaxtok":
    return []
  base_dir = zett_base_workdir(config, workdir)
  if paths.exists(paths.join(base_dir, "results.json")):
    return []
  return [(copy.deepcopy(config.base_train), base_dir)]


# --- resuming -----------------------------------------------------------------------------------

# Fields that change how a run computes, not what its checkpoints and data position mean.
RUNTIME_FIELDS = {
  "model": {"dtype", "attention_impl", "pool_impl", "cross_attn_impl", "scan_layers", "remat"},
  "patching": {
    *("entropies", "entropy_batch_size", "entropy_store", "entropy_model_workdir"),
    "bytes_per_patch",  # FLOP accounting only
  },
}
SAME_RUN = {  # section -> fields that must match the workdir's (None: all but RUNTIME_FIELDS)
  "model": None,
  "data": ("name", "text_key", "val_fraction", "seq_len"),
  "patching": None,
}


def check_same_run(config, stored, workdir: str) -> None:
  """Refuses (ConfigError naming each field) a config that would continue another run."""
  new, old = _plain(config), _plain(stored)
  diffs = []
  for section, fields in SAME_RUN.items():
    a, b = new.get(section) or {}, old.get(section) or {}
    keys = fields or sorted((set(a) | set(b)) - RUNTIME_FIELDS.get(section, set()))
    diffs += [(f"{section}.{k}", a[k], b[k]) for k in keys if k in a and k in b and a[k] != b[k]]
  if diffs:
    listed = "; ".join(f"config.{f}={a!r}, the workdir's is {b!r}" for f, a, b in diffs)
    raise ConfigError(
      f"{listed}: {workdir} holds checkpoints of a run with its {workdir_lib.CONFIG_FILE}. "
      "Resume with the same values, or use a new --workdir."
    )


def _plain(config) -> dict:
  """A config as JSON values (tuples as lists), as config.json holds it."""
  return json.loads(config.to_json_best_effort())


# --- tokenizers ---------------------------------------------------------------------------------


def resolve_tokenizer(config) -> str:
  """The tokenizer file of config.data.tokenizer: "bpe:<vocab>" (trained, cached) or a path."""
  d = config.data
  spec = d.tokenizer
  if spec.startswith("bpe:"):
    try:
      vocab = int(spec[4:])
    except ValueError:
      raise ConfigError(f"config.data.tokenizer={spec!r}: expected bpe:<vocab size>") from None
    data_dir = os.path.expanduser(d.data_dir or corpora.default_data_dir())
    return bpe.get_or_train(
      corpora.corpus_for(d, "train"),
      vocab,
      os.path.join(data_dir, "tokenizers"),
      max_docs=d.get("tokenizer_docs", 2000),
    )
  path = os.path.expanduser(spec)
  if not os.path.exists(path):
    raise ConfigError(f"config.data.tokenizer={spec!r}: no such tokenizer file")
  return path


def _same_tokenizer(a: str, b: str) -> bool:
  """Whether the tokenizer `a` (local) and the workdir's `b` (local or a URL) are one."""
  same = lambda x, y: paths.exists(y) and paths.read_bytes(x) == paths.read_bytes(y)
  return same(a, b) and (
    not os.path.exists(sidecar_path(a)) or same(sidecar_path(a), sidecar_path(b))
  )


def _tokenizer(config, workdir: str, stored) -> None:
  d = config.data
  kept = workdir_lib.tokenizer_path(workdir)
  if d.get("tokenizer_file") == paths.absolute(kept) and paths.exists(kept):
    return  # prepared already (a config that prepare returned)
  if stored is not None and stored.data.get("tokenizer") == d.tokenizer and paths.exists(kept):
    d.tokenizer_file = paths.absolute(kept)
    d.bytes_per_token = stored.data.bytes_per_token
    config.model.vocab_size = stored.model.vocab_size
    return
  src = resolve_tokenizer(config)
  same_file = os.path.abspath(src) == paths.absolute(kept)
  if paths.exists(kept) and not same_file and not _same_tokenizer(src, kept):
    raise ConfigError(
      f"config.data.tokenizer={d.tokenizer!r}: {workdir} holds another tokenizer "
      f"({kept}); its checkpoints belong to that one. Use a new --workdir."
    )
  tok = load_tokenizer(src)
  if not paths.exists(kept):
    _copy_tokenizer(src, kept)
  d.tokenizer_file = paths.absolute(kept)
  config.model.vocab_size = tok.vocab_size
  corpus = corpora.corpus_for(d, "train")
  d.bytes_per_token = 1.0 / tokens_per_byte(tok.make_encoder(), corpus)


def _copy_tokenizer(src: str, dst: str) -> None:
  """Copies a tokenizer (and its byte-view sidecar) atomically: the sidecar first."""
  pairs = [(sidecar_path(src), sidecar_path(dst))] if os.path.exists(sidecar_path(src)) else []
  for a, b in [*pairs, (src, dst)]:
    copy_atomic(a, b)


def tokens_per_byte(encode_fn, corpus, max_docs: int = 200) -> float:
  """Average tokens per byte on a sample of the corpus (BOS/EOS excluded)."""
  step = max(1, len(corpus) // max_docs)
  docs = [corpus[i] for i in range(0, len(corpus), step)][:max_docs]
  return sum(len(encode_fn(d)) - 2 for d in docs) / max(1, sum(len(d) for d in docs))


# --- BLT patching --------------------------------------------------------------------------------


def entropy_store(config) -> str:
  """Where the precomputed entropies of a BLT config's corpus live."""
  d = config.data
  fp = entropy_model.fingerprint(config.patching.entropy_model_workdir)
  return store_dir(d.data_dir or corpora.default_data_dir(), d.name, d.val_fraction, fp)


def precompute_entropies(config, *, overwrite: bool = False) -> dict[str, str]:
  """Runs the precompute pass for both splits of a BLT config's corpus (if not done yet)."""
  pcfg = PatchingConfig.from_dict({**config.patching, "entropy_store": entropy_store(config)})
  paths = dict(zip(("train", "validation"), entropy_store_paths(pcfg)))
  todo = {s: p for s, p in paths.items() if overwrite or not os.path.exists(p)}
  if todo:
    em = entropy_model.EntropyModel.load(pcfg.entropy_model_workdir)
    for split, path in todo.items():
      corpus = corpora.corpus_for(config.data, split)
      precompute(em, corpus, path, batch_size=pcfg.entropy_batch_size)
  return paths


def _patching(config, stored) -> None:
  p = config.patching
  if p.scheme == "entropy" and p.entropies == "precomputed":
    precompute_entropies(config)
    p.entropy_store = entropy_store(config)
  if p.bytes_per_patch:
    return
  if stored is not None and _same_patching(stored.get("patching"), p, stored.data, config.data):
    p.bytes_per_patch = stored.patching.bytes_per_patch
    return
  pcfg = PatchingConfig.from_dict(p)
  host = BLTBatches(pcfg, workdir_lib.model_config(config))
  packed = packing.PackedBatches(
    corpora.corpus_for(config.data, "train"),
    batch_size=config.data.batch_size,
    seq_len=config.data.seq_len,
    seed=config.train.seed,
    encode_fn=blt_encode_fn(pcfg),
  )
  p.bytes_per_patch = measure_bytes_per_patch(host, packed)


def _same_patching(stored_p, p, stored_d, d) -> bool:
  """Whether a stored run measured its bytes per patch under this patching and data."""
  if stored_p is None or not stored_p.get("bytes_per_patch"):
    return False
  keys = ("name", "data_dir", "val_fraction", "seq_len", "batch_size")
  same_data = all(stored_d.get(k) == d.get(k) for k in keys)
  strip = lambda c: {k: v for k, v in c.items() if k not in ("bytes_per_patch", "entropy_store")}
  return same_data and strip(stored_p) == strip(p)


# --- ZeTT ---------------------------------------------------------------------------------------


def zett_base_workdir(config, workdir: str) -> str:
  return paths.expand(config.base.workdir or paths.join(paths.absolute(workdir), "base"))


def _zett(config, workdir: str) -> None:
  if config.base.kind == "jaxtok":
    config.base.workdir = zett_base_workdir(config, workdir)
  zett.prepare(config, workdir)
