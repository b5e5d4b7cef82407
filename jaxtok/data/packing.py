"""Deterministic, checkpointable packing of documents into fixed-shape batches.

The documents of an epoch, in a seeded permutation, are encoded and laid end to
end as one token stream. Row r of the output is the window of stream tokens
[r*T, r*T + T] (T = seq_len): inputs are its first T tokens and targets its last
T, so consecutive rows overlap by one token and every stream token is an input
exactly once. A target that lies in another document than its input is PAD, so
the model never learns to predict across documents and the loss mask is just
`targets >= 0`.

The position in the stream is three integers (epoch, document index, offset in
the document), which is all a checkpoint needs to resume the exact same batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from jaxtok.data import codec

Batch = dict[str, np.ndarray]
EncodeFn = Callable[[bytes], npt.ArrayLike]

_STATE_VERSION = 1
# Position keys change as batches are produced; the others pin the stream's
# identity, so a state is only accepted by an iterator producing the same stream.
_POSITION_KEYS = ("epoch", "doc_index", "doc_offset")
_IDENTITY_KEYS = (
  "version",
  "num_docs",
  "seq_len",
  "seed",
  "shuffle",
  "process_index",
  "process_count",
)


def epoch_order(
  num_docs: int,
  *,
  seed: int,
  epoch: int,
  shuffle: bool,
  process_index: int = 0,
  process_count: int = 1,
) -> np.ndarray:
  """Document indices this process reads in `epoch`, in reading order."""
  if shuffle:
    order = np.random.default_rng([seed, epoch]).permutation(num_docs)
  else:
    order = np.arange(num_docs)
  return order[process_index::process_count]


def _default_encode(data: bytes) -> np.ndarray:
  return codec.encode(data, add_bos=True, add_eos=True)


class PackedBatches(Iterator[Batch]):
  """Yields `{inputs, targets, segment_ids, positions}`, each int32 [B, T].

  `segment_ids` number the document pieces of a row 1, 2, ... (0 is padding);
  `positions` count from 0 at the start of each piece. Padding appears only
  in the last batch when `repeat=False`; iteration stops after that batch.
  `corpus` is any sequence of bytes (e.g. a `Corpus`).

  `encode_fn` maps a document to its ids, or to a dict with the ids under
  "inputs" and per-token features of the same length under other keys (e.g.
  precomputed entropies); each feature comes out as a [B, T] array aligned
  with `inputs`, 0 where `inputs` is padding.

  With `repeat=False`, processes may yield different numbers of batches; a
  multi-host eval loop must agree on a count (or pad) before collectives.
  """

  def __init__(
    self,
    corpus: Sequence[bytes],
    *,
    batch_size: int,
    seq_len: int,
    seed: int,
    shuffle: bool = True,
    repeat: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    encode_fn: EncodeFn | None = None,
  ):
    if batch_size < 1 or seq_len < 1:
      raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    if seed < 0:
      raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    num_docs = len(corpus)
    if num_docs < process_count:
      raise ValueError(
        f"corpus has {num_docs} documents, fewer than the {process_count} processes that share it"
      )
    self._corpus = corpus
    self.batch_size = batch_size
    self.seq_len = seq_len
    self.seed = seed
    self.shuffle = shuffle
    self.repeat = repeat
    self.process_index = process_index
    self.process_count = process_count
    self._encode = encode_fn or _default_encode
    self._num_docs = num_docs
    self._position = np.arange(seq_len, dtype=np.int32)
    self._set_position(epoch=0, doc_index=0, doc_offset=0)

  # -- position ----------------------------------------------------------

  def _set_position(self, *, epoch: int, doc_index: int, doc_offset: int) -> None:
    self._epoch = epoch
    self._doc_index = doc_index
    self._doc_offset = doc_offset
    self._order = self._epoch_order(epoch)
    self._tokens: np.ndarray | None = None  # encoded current document
    self._features: dict[str, np.ndarray] = {}  # its per-token features, if encode_fn gives any

  def _epoch_order(self, epoch: int) -> np.ndarray:
    return epoch_order(
      self._num_docs,
      seed=self.seed,
      epoch=epoch,
      shuffle=self.shuffle,
      process_index=self.process_index,
      process_count=self.process_count,
    )

  def get_state(self) -> dict[str, Any]:
    """The position after the last yielded batch, as JSON-serialisable ints."""
    return {
      "version": _STATE_VERSION,
      "epoch": int(self._epoch),
      "doc_index": int(self._doc_index),
      "doc_offset": int(self._doc_offset),
      "num_docs": int(self._num_docs),
      "seq_len": int(self.seq_len),
      "seed": int(self.seed),
      "shuffle": bool(self.shuffle),
      "process_index": int(self.process_index),
      "process_count": int(self.process_count),
    }

  def set_state(self, state: dict[str, Any]) -> None:
    """Resumes at `state` (from `get_state`) of an iterator over the same stream."""
    expected = set(_POSITION_KEYS) | set(_IDENTITY_KEYS)
    if set(state) != expected:
      raise ValueError(
        f"not a PackedBatches state: missing keys {sorted(expected - set(state))}, "
        f"unexpected keys {sorted(set(state) - expected)}"
      )
    mine = self.get_state()
    wrong = [
      f"{k}={state[k]!r} (this iterator has {mine[k]!r})"
      for k in _IDENTITY_KEYS
      if state[k] != mine[k]
    ]
    if wrong:
      raise ValueError("data iterator state is for a different stream: " + ", ".join(wrong))
    epoch, doc_index, doc_offset = (int(state[k]) for k in _POSITION_KEYS)
    if epoch < 0 or not 0 <= doc_index <= len(self._epoch_order(epoch)) or doc_offset < 0:
      raise ValueError(f"data iterator state has an invalid position: {state}")
    self._set_position(epoch=epoch, doc_index=doc_index, doc_offset=doc_offset)

  # -- reading the stream ------------------------------------------------

  def _current_tokens(self) -> np.ndarray | None:
    """Tokens of the document under the cursor, skipping finished ones; None at the end."""
    skipped = 0
    while True:
      if self._doc_index >= len(self._order):
        if not self.repeat:
          return None
        self._set_position(epoch=self._epoch + 1, doc_index=0, doc_offset=0)
      if self._tokens is None:
        self._load_document()
      if self._doc_offset < self._tokens.size:
        return self._tokens
      self._doc_index += 1
      self._doc_offset = 0
      self._tokens = None
      skipped += 1
      if skipped > 2 * len(self._order) + 1:
        raise ValueError("every document encodes to zero tokens; nothing to pack")

  def _load_document(self) -> None:
    encoded = self._encode(self._corpus[int(self._order[self._doc_index])])
    features = {}
    if isinstance(encoded, dict):
      features = {k: np.asarray(v).reshape(-1) for k, v in encoded.items() if k != "inputs"}
      encoded = encoded["inputs"]
    tokens = np.asarray(encoded).astype(np.int32, copy=False).reshape(-1)
    for k, v in features.items():
      if v.size != tokens.size:
        raise ValueError(
          f"encode_fn feature {k!r} has {v.size} values for {tokens.size} tokens "
          f"(document {int(self._order[self._doc_index])})"
        )
    self._tokens, self._features = tokens, features

  def _fill_row(
    self,
    inputs: np.ndarray,
    targets: np.ndarray,
    segments: np.ndarray,
    positions: np.ndarray,
    features: dict[str, np.ndarray],
  ) -> None:
    """Fills one row (already PAD/0) from the stream and advances the cursor."""
    length = self.seq_len
    filled = 0
    segment = 0
    tokens = None
    while filled < length:
      tokens = self._current_tokens()
      if tokens is None:
        break
      segment += 1
      take = min(length - filled, tokens.size - self._doc_offset)
      piece = tokens[self._doc_offset : self._doc_offset + take]
      end = filled + take
      inputs[filled:end] = piece
      # Within a piece, each input's target is the next token.
      targets[filled : end - 1] = piece[1:]
      segments[filled:end] = segment
      positions[filled:end] = self._position[:take]
      for k, row in features.items():
        row[filled:end] = self._features[k][self._doc_offset : self._doc_offset + take]
      self._doc_offset += take
      filled = end
    # The last input's target is the next stream token if it lies in the same
    # document (a document split across rows); otherwise it stays PAD.
    if filled and tokens is not None and self._doc_offset < tokens.size:
      targets[filled - 1] = tokens[self._doc_offset]

  def __iter__(self) -> PackedBatches:
    return self

  def __next__(self) -> Batch:
    if self._current_tokens() is None:  # never None when repeating
      raise StopIteration
    shape = (self.batch_size, self.seq_len)
    inputs_BxT = np.full(shape, codec.PAD_ID, dtype=np.int32)
    targets_BxT = np.full(shape, codec.PAD_ID, dtype=np.int32)
    segment_ids_BxT = np.zeros(shape, dtype=np.int32)
    positions_BxT = np.zeros(shape, dtype=np.int32)
    features = {k: np.zeros(shape, dtype=v.dtype) for k, v in self._features.items()}
    for row in range(self.batch_size):
      self._fill_row(
        inputs_BxT[row],
        targets_BxT[row],
        segment_ids_BxT[row],
        positions_BxT[row],
        {k: v[row] for k, v in features.items()},
      )
    return {
      "inputs": inputs_BxT,
      "targets": targets_BxT,
      "segment_ids": segment_ids_BxT,
      "positions": positions_BxT,
      **features,
    }


def empty_batch(like: Batch | None = None, *, rows: int, seq_len: int) -> Batch:
  """A batch of padding only (no tokens, no targets): what `PackedBatches` yields past the
  end of its documents. Multi-process evaluation pads to a common batch count with it.

  `like` (a batch of the same stream) gives the per-token feature keys and dtypes.
  """
  shape = (rows, seq_len)
  out = {
    "inputs": np.full(shape, codec.PAD_ID, np.int32),
    "targets": np.full(shape, codec.PAD_ID, np.int32),
    "segment_ids": np.zeros(shape, np.int32),
    "positions": np.zeros(shape, np.int32),
  }
  for k, v in (like or {}).items():
    if k not in out:
      out[k] = np.zeros(shape, v.dtype)
  return out


# ---------------------------------------------------------------------------


def with_target_bytes(batch: Batch, lengths: np.ndarray) -> Batch:
  """`batch` plus "target_bytes": the bytes each target token stands for (0 for padding),
  so that token models count bits per byte over the same bytes as byte models."""
  t = batch["targets"]
  return {**batch, "target_bytes": np.where(t >= 0, lengths[np.maximum(t, 0)], 0).astype(np.int32)}


class _Raised:
  def __init__(self, error: BaseException):
    self.error = error


_END = object()


class Prefetcher(Iterator[tuple[Batch, dict[str, Any]]]):
  """Runs `iterator` in a background thread; yields `(batch, state_after_batch)`.

  The state comes with each batch, so a trainer checkpoints the position of
  the batch it last consumed, not of the batches produced ahead of it.
  Exceptions raised by `iterator` are re-raised by `__next__`.
  """

  def __init__(self, iterator: Any, size: int = 2):
    if size < 1:
      raise ValueError(f"size must be >= 1, got {size}")
    self._iterator = iterator
    self._state = iterator.get_state()
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(target=self._produce, name="jaxtok-prefetch", daemon=True)
    self._thread.start()

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _produce(self) -> None:
    try:
      while not self._stop.is_set():
        try:
          batch = next(self._iterator)
        except StopIteration:
          self._put(_END)
          return
        if not self._put((batch, self._iterator.get_state())):
          return
    except BaseException as error:  # noqa: BLE001 - handed to the consumer
      self._put(_Raised(error))

  def get_state(self) -> dict[str, Any]:
    """The state after the last batch handed to the consumer."""
    return self._state

  def __iter__(self) -> Prefetcher:
    return self

  def __next__(self) -> tuple[Batch, dict[str, Any]]:
    if self._done:
      raise StopIteration
    item = self._queue.get()
    if item is _END:
      self._done = True
      raise StopIteration
    if isinstance(item, _Raised):
      self._done = True
      raise item.error
    self._state = item[1]
    return item

  def close(self) -> None:
    """Stops the thread; pending batches are dropped."""
    self._done = True
    self._stop.set()
    self._thread.join()

  def __enter__(self) -> Prefetcher:
    return self

  def __exit__(self, *exc: object) -> None:
    self.close()


# ---------------------------------------------------------------------------


def unigram_bits_per_byte(corpus: Sequence[bytes], max_docs: int | None = None) -> float:
  """Entropy (bits) of the byte unigram distribution of `corpus`.

  This is the cross-entropy, in bits per byte, of a unigram model fitted on
  the same documents it is scored on, hence a lower bound for any unigram
  model on them: a language model that does not beat it has learned nothing
  beyond byte frequencies. Counts content bytes only (no BOS/EOS), like the
  bits-per-byte of a model. Uses the first `max_docs` documents if given.
  """
  n = len(corpus) if max_docs is None else min(max_docs, len(corpus))
  counts = np.zeros(256, dtype=np.int64)
  for i in range(n):
    counts += np.bincount(np.frombuffer(corpus[i], dtype=np.uint8), minlength=256)
  total = counts.sum()
  if total == 0:
    raise ValueError("cannot estimate a unigram distribution: the documents hold no bytes")
  p = counts[counts > 0] / total
  return float(-(p * np.log2(p)).sum())
