"""Next-byte entropies from BLT's entropy model: on the fly, or precomputed once.

The entropy model (`jaxtok.models.entropy_model`) gives, at position t, the
entropy H = -sum p ln p (nats) of its prediction of byte t+1 ("next entropy");
`rules.entropy_starts` takes the same numbers shifted by one (H(x_t | x_<t)).

* On the fly: `EntropyModel.next_entropies` runs a jitted forward on packed
  rows, so each row is scored with the context it holds (like the BLT that
  trains on it).
* Precomputed: `precompute` scores every document of a corpus split once and
  stores the entropies (float16) in an array_record file next to the data,
  keyed by the SHA-1 of the document; `EntropyStore` looks them up, so BLT
  training does not run the entropy model. A document is scored in windows of
  the entropy model's training length R that start at multiples of R/2 from the
  document start, each byte in the first window that holds it: every byte has
  between R/2 and R bytes of context (the first R bytes: all before them), and
  its entropy depends on the bytes before it only (`_windows`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxtok.data import codec

_DIGEST = 20  # SHA-1 bytes at the start of every record
# In the store's key: version 1 placed the last windows by the document's length (the
# entropies of a byte depended on the bytes after it); its files must not be reused.
_STORE_VERSION = 2


def entropy_from_logits(logits_BxTxV: jax.Array) -> jax.Array:
  """Entropy (nats) of softmax(logits) over the last axis, float32."""
  logp = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def per_byte_entropies(next_entropies_BxT: np.ndarray) -> np.ndarray:
  """[B, T] next entropies -> [B, T+1] H(x_t | x_<t) for t = 0..T (0 at t = 0)."""
  n = np.asarray(next_entropies_BxT, np.float32)
  return np.concatenate([np.zeros((n.shape[0], 1), np.float32), n], axis=1)


# --- precompute pass ---------------------------------------------------------------------------


def _windows(n: int, r: int) -> list[tuple[int, int, int]]:
  """(start, keep_from, end) windows covering [0, n): run [start, end), keep [keep_from, end).

  Windows of length r start at multiples of r // 2 from the document start, and each
  byte is kept from the first window that holds it (the one with the most bytes before
  it). Where a window starts, and so a byte's entropy, depends only on the byte's index,
  never on the document's length: entropies are causal, and a prefix of a document gets
  the same entropies as the document (a window cut short by the end is causal-masked
  the same as a whole one).
  """
  stride = max(1, r // 2)
  out: list[tuple[int, int, int]] = []
  start = keep = 0
  while keep < n:
    end = min(n, start + r)
    out.append((start, keep, end))
    start, keep = start + stride, end
  return out


def document_entropies(em, docs: Iterable[bytes], batch_size: int = 16):
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
  key = json.dumps([data_name, val_fraction, fingerprint, _STORE_VERSION])
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  return os.path.join(os.path.expanduser(data_dir), "entropies", digest)


def precompute(em, corpus: Sequence[bytes], path: str, *, batch_size: int = 16) -> str:
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
