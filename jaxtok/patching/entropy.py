"""Next-byte entropies from BLT's entropy model: on the fly, or precomputed once.

The entropy model is a byte-level `Transformer` trained with
`python -m experiments.train --config=configs/entropy_model.py`. Its entropy at
position t, H = -sum p ln p (nats) of the prediction made at t, is the entropy
of byte t+1 given the bytes up to t ("next entropy"); `rules.entropy_starts`
takes the same numbers shifted by one (H(x_t | x_<t)).

* On the fly: `EntropyModel.next_entropies` runs a jitted forward on packed
  rows, so each row is scored with the context it holds (like the BLT that
  trains on it).
* Precomputed: `precompute` scores every document of a corpus split once and
  stores the entropies (float16) in an array_record file next to the data,
  keyed by the SHA-1 of the document; `EntropyStore` looks them up, so BLT
  training does not run the entropy model. A document is scored in windows of
  the entropy model's training length R, advancing by R/2, so every byte has
  between R/2 and R bytes of context (the first R bytes: all before them).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from jaxtok.data import codec
from jaxtok.models.transformer import Transformer

_DIGEST = 20  # SHA-1 bytes at the start of every record


def entropy_model_fingerprint(workdir: str) -> str:
  """ "<absolute workdir>@<latest step>" of an entropy model; checks it is a byte LM."""
  from jaxtok.train import checkpoint as ckpt_lib
  from jaxtok.train.trainer import load_config

  workdir = os.path.abspath(os.path.expanduser(workdir))
  config = load_config(workdir)
  if config.model.get("name", "transformer") != "transformer" or config.data.get("tokenizer"):
    raise ValueError(
      f"{workdir} holds a {config.model.get('name')!r} model"
      + (f" on tokenizer {config.data.tokenizer!r}" if config.data.get("tokenizer") else "")
      + "; the entropy model must be a byte-level transformer (configs/entropy_model.py)"
    )
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  step = ckpt.latest_step()
  ckpt.close()
  if step is None:
    raise ValueError(f"{workdir} has no checkpoint: train the entropy model first")
  return f"{workdir}@{step}"


def entropy_from_logits(logits_BxTxV: jax.Array) -> jax.Array:
  """Entropy (nats) of softmax(logits) over the last axis, float32."""
  logp = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


class EntropyModel:
  """A trained byte LM that scores next-byte entropies with a jitted forward."""

  def __init__(self, model: Transformer, *, seq_len: int, fingerprint: str = ""):
    if not isinstance(model, Transformer) or model.cfg.vocab_size != codec.VOCAB_SIZE:
      raise ValueError(
        f"the entropy model must be a byte-level Transformer with vocab {codec.VOCAB_SIZE}, "
        f"got {type(model).__name__}"
        + (f" with vocab {model.cfg.vocab_size}" if isinstance(model, Transformer) else "")
      )
    self.model = model
    self.seq_len = seq_len
    self.fingerprint = fingerprint
    self.graphdef, self.params = nnx.split(model, nnx.Param)

    def next_entropies(params, ids, seg, pos):
      m = nnx.merge(self.graphdef, params)
      return entropy_from_logits(m(ids, segment_ids=seg, positions=pos))

    self._fn = jax.jit(next_entropies)

  @classmethod
  def load(cls, workdir: str) -> EntropyModel:
    """The entropy model trained in `workdir` (its latest checkpoint)."""
    from jaxtok.train.trainer import restore

    fingerprint = entropy_model_fingerprint(workdir)
    model, config = restore(workdir)
    return cls(model, seq_len=int(config.data.seq_len), fingerprint=fingerprint)

  def next_entropies(self, ids_BxT, segment_ids_BxT=None, positions_BxT=None) -> np.ndarray:
    """float32 [B, T]: entropy of the prediction made at every position."""
    ids = jnp.asarray(ids_BxT, jnp.int32)
    seg = jnp.ones(ids.shape, jnp.int32) if segment_ids_BxT is None else segment_ids_BxT
    if positions_BxT is None:
      positions_BxT = jnp.broadcast_to(jnp.arange(ids.shape[1], dtype=jnp.int32), ids.shape)
    return np.asarray(self._fn(self.params, ids, jnp.asarray(seg), jnp.asarray(positions_BxT)))


def per_byte_entropies(next_entropies_BxT: np.ndarray) -> np.ndarray:
  """[B, T] next entropies -> [B, T+1] H(x_t | x_<t) for t = 0..T (0 at t = 0)."""
  n = np.asarray(next_entropies_BxT, np.float32)
  return np.concatenate([np.zeros((n.shape[0], 1), np.float32), n], axis=1)


# --- precompute pass ---------------------------------------------------------------------------


def _windows(n: int, r: int) -> list[tuple[int, int, int]]:
  """(start, keep_from, end) windows covering [0, n): run [start, end), keep [keep_from, end)."""
  if n <= r:
    return [(0, 0, n)]
  stride = max(1, r // 2)
  out = [(0, 0, r)]
  while out[-1][2] < n:
    end = min(n, out[-1][2] + stride)
    out.append((end - r, out[-1][2], end))
  return out


def document_entropies(em: EntropyModel, docs: Iterable[bytes], batch_size: int = 16):
  """Yields the next entropies (float16 [len(encode(doc))]) of each document, in order."""
  r = em.seq_len
  pending: list[tuple[int, int, int, int, np.ndarray]] = []  # (doc, start, keep, end, ids)
  outs: dict[int, np.ndarray] = {}
  left: dict[int, int] = {}  # windows still to run, per document
  next_doc = 0

  def run(batch):
    ids = np.full((batch_size, r), codec.PAD_ID, np.int32)
    seg = np.zeros((batch_size, r), np.int32)
    for i, (_, s, _, e, x) in enumerate(batch):
      ids[i, : e - s] = x
      seg[i, : e - s] = 1
    pos = np.broadcast_to(np.arange(r, dtype=np.int32), (batch_size, r))
    h = em.next_entropies(ids, seg, pos)
    for i, (d, s, k, e, _) in enumerate(batch):
      outs[d][k:e] = h[i, k - s : e - s]
      left[d] -= 1

  def finished():
    nonlocal next_doc
    while next_doc in left and left[next_doc] == 0:
      del left[next_doc]
      yield outs.pop(next_doc)
      next_doc += 1

  for d, doc in enumerate(docs):
    x = codec.encode(doc)
    outs[d] = np.zeros(x.size, np.float16)
    wins = _windows(x.size, r)
    left[d] = len(wins)
    for s, k, e in wins:
      pending.append((d, s, k, e, x[s:e]))
      if len(pending) == batch_size:
        run(pending)
        pending = []
        yield from finished()
  if pending:
    run(pending)
  yield from finished()


def store_dir(data_dir: str, data_name: str, val_fraction: float, fingerprint: str) -> str:
  """Where the entropies of corpus `data_name` under one entropy model live."""
  key = json.dumps([data_name, val_fraction, fingerprint])
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  return os.path.join(os.path.expanduser(data_dir), "entropies", digest)


def store_paths(config) -> dict[str, str]:
  """Where the precomputed entropies of a BLT config's corpus live, per split."""
  from jaxtok.data import corpora

  d = config.data
  fp = entropy_model_fingerprint(config.patching.entropy_model_workdir)
  root = store_dir(d.data_dir or corpora.default_data_dir(), d.name, d.val_fraction, fp)
  return {s: os.path.join(root, f"{s}.array_record") for s in ("train", "validation")}


def precompute_for_config(config, *, overwrite: bool = False) -> dict[str, str]:
  """Runs the precompute pass for both splits of a BLT config's corpus (if not done yet)."""
  from jaxtok.data import corpora

  paths = store_paths(config)
  todo = {s: p for s, p in paths.items() if overwrite or not os.path.exists(p)}
  if not todo:
    return paths
  em = EntropyModel.load(config.patching.entropy_model_workdir)
  d = config.data
  for split, path in todo.items():
    corpus = corpora.corpus_for(d, split)
    precompute(em, corpus, path, batch_size=config.patching.entropy_batch_size)
  return paths


def precompute(
  em: EntropyModel, corpus: Sequence[bytes], path: str, *, batch_size: int = 16
) -> str:
  """Scores every document of `corpus` and writes `path` (an array_record file)."""
  from array_record.python.array_record_module import ArrayRecordWriter

  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  writer = ArrayRecordWriter(tmp, "group_size:1")
  docs = (corpus[i] for i in range(len(corpus)))
  digests = (hashlib.sha1(corpus[i]).digest() for i in range(len(corpus)))
  try:
    stream = document_entropies(em, docs, batch_size)
    for digest, h in tqdm(zip(digests, stream), total=len(corpus), desc="entropies", unit="doc"):
      writer.write(digest + h.astype("<f2").tobytes())
  finally:
    writer.close()
  os.replace(tmp, path)  # only complete files carry the final name
  return path


class EntropyStore:
  """Precomputed next entropies of documents, looked up by content."""

  def __init__(self, paths: Sequence[str]):
    from array_record.python.array_record_module import ArrayRecordReader

    self._index: dict[bytes, tuple[int, int]] = {}
    self._readers = []
    for p in paths:
      if not os.path.exists(p):
        raise FileNotFoundError(
          f"no precomputed entropies at {p}; run `python -m experiments.precompute_entropies "
          "--config=<the BLT config>` first"
        )
      reader = ArrayRecordReader(p)
      for i, rec in enumerate(reader.read_all()):
        self._index.setdefault(rec[:_DIGEST], (len(self._readers), i))
      self._readers.append(reader)

  def __len__(self) -> int:
    return len(self._index)

  def __call__(self, doc: bytes) -> np.ndarray:
    """float32 next entropies of `codec.encode(doc)` (BOS and EOS included)."""
    key = hashlib.sha1(doc).digest()
    if key not in self._index:
      raise KeyError(
        "a document has no precomputed entropies (the corpus changed since the precompute "
        "pass?); rerun `python -m experiments.precompute_entropies`"
      )
    r, i = self._index[key]
    rec = self._readers[r].read([i])[0]
    return np.frombuffer(rec[_DIGEST:], "<f2").astype(np.float32)
