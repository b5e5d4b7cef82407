"""Dynamic tokenization (Feher et al., 2024): batch-level BPE merges + hypernetwork embeddings.

A batch is first tokenized by the base tokenizer; then, like BPE training
but inside the batch only, the most frequent adjacent pair of tokens is
merged into a new token, repeatedly (`n_merges` times, or until no pair occurs
twice). Pairs never merge across a word start (a token beginning with
whitespace or punctuation) or a newline, so merged tokens stay inside words.
The embeddings of merged tokens come from the ZeTT hypernetwork, computed on
the fly and cached by their bytes across batches. The LM then reads (and
predicts) the shorter sequence: its output softmax is over the base vocabulary
plus the batch's merged tokens.

Caveat: merges learned on a batch are chosen from that batch's own text, so
its output vocabulary carries information about the text being scored (the
bits per byte come out optimistic). `evaluate_dynamic` therefore also scores
each batch with the merges learned on the *previous* batch, a vocabulary that
depends only on text already seen: that row is a strict code length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxtok.tokenizers.byte_view import ByteTokenizer

_WORD_START = frozenset(b" \t\n\r.,;:!?()[]{}\"'`=+-*/\\<>|&^%$#@~")


def _mergeable(left: bytes, right: bytes) -> bool:
  return bool(left) and bool(right) and right[0] not in _WORD_START and b"\n" not in left


def batch_merges(
  seqs: Sequence[np.ndarray], vocab: Sequence[bytes], n_merges: int
) -> tuple[list[np.ndarray], list[bytes], list[tuple[int, int]]]:
  """Learns and applies up to `n_merges` batch-level BPE merges to `seqs` (ids into `vocab`).

  Returns the merged sequences (new ids are len(vocab), len(vocab)+1, ...), the
  bytes of the new tokens and the merged id pairs, in merge order.
  """
  table = list(vocab)
  seqs = [np.asarray(s, np.int64).copy() for s in seqs]
  new: list[bytes] = []
  pairs: list[tuple[int, int]] = []
  for _ in range(n_merges):
    counts: dict[tuple[int, int], int] = {}
    for s in seqs:
      for a, b in zip(s[:-1].tolist(), s[1:].tolist()):
        if _mergeable(table[a], table[b]):
          counts[(a, b)] = counts.get((a, b), 0) + 1
    if not counts:
      break
    (a, b), n = max(counts.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
    if n < 2:
      break
    merged = table[a] + table[b]
    new_id = len(table)
    table.append(merged)
    new.append(merged)
    pairs.append((a, b))
    seqs = [_replace_pair(s, a, b, new_id) for s in seqs]
  return [s.astype(np.int32) for s in seqs], new, pairs


def apply_merges(
  seqs: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], vocab_size: int
) -> list[np.ndarray]:
  """Applies merges learned elsewhere (`batch_merges` pairs) in order, like BPE encoding."""
  seqs = [np.asarray(s, np.int64) for s in seqs]
  for k, (a, b) in enumerate(pairs):
    seqs = [_replace_pair(s, a, b, vocab_size + k) for s in seqs]
  return [s.astype(np.int32) for s in seqs]


def _replace_pair(s: np.ndarray, a: int, b: int, new_id: int) -> np.ndarray:
  out, i, n = [], 0, len(s)
  while i < n:
    if i + 1 < n and s[i] == a and s[i + 1] == b:
      out.append(new_id)
      i += 2
    else:
      out.append(int(s[i]))
      i += 1
  return np.asarray(out, np.int64)


class EmbeddingCache:
  """Hypernetwork embeddings of merged tokens, computed once per byte string."""

  def __init__(self, predict, base: ByteTokenizer, max_len: int, chunk: int = 256):
    """`predict(decomp [chunk, max_len]) -> (e_in [chunk, D], e_out [chunk, D])` (numpy)."""
    self._predict = predict
    self._base = base
    self._max_len = max_len
    self._chunk = chunk
    self._rows: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    self.misses = 0

  def get(self, pieces: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    from jaxtok.tokenizers.decompose import decompose_bytes

    todo = [p for p in dict.fromkeys(pieces) if p not in self._rows]
    self.misses += len(todo)
    for s in range(0, len(todo), self._chunk):
      part = todo[s : s + self._chunk]
      ids = decompose_bytes(part, self._base, self._max_len)
      ids = np.pad(ids, ((0, self._chunk - len(part)), (0, 0)), constant_values=-1)
      e_in, e_out = self._predict(ids)
      for i, p in enumerate(part):
        self._rows[p] = (e_in[i], e_out[i])
    if not pieces:
      return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return (
      np.stack([self._rows[p][0] for p in pieces]),
      np.stack([self._rows[p][1] for p in pieces]),
    )


def _lm_sums(graphdef, params, e_in, e_out, valid, batch):
  """LM loss sums of the base transformer fed `e_in` rows, scored against `e_out` rows."""
  import jax.numpy as jnp
  from flax import nnx

  from jaxtok.train.losses import token_ce_sums

  model = nnx.merge(graphdef, params)
  x = jnp.take(e_in, jnp.maximum(batch["inputs"], 0), axis=0).astype(model.embed.dtype)
  h = model.hidden(x, segment_ids=batch["segment_ids"], positions=batch["positions"])
  logits = jnp.einsum("btd,vd->btv", h.astype(jnp.float32), e_out)
  logits = jnp.where(valid[None, None], logits, -1e9)
  return token_ce_sums(logits, batch["targets"], batch["target_bytes"])


def evaluate_dynamic(
  base,
  base_tok: ByteTokenizer,
  hypernet,
  docs: Sequence[bytes],
  *,
  merges: Sequence[int] = (0, 32, 128, 512),
  batch_docs: int = 8,
  warmup_docs: Sequence[bytes] = (),
) -> list[dict[str, float]]:
  """Sequence length and bits per byte of `base` on `docs` with dynamic tokenization.

  Each batch of `batch_docs` documents (one per row) is scored twice per merge
  count: "in_batch" learns the merges on the batch itself (as proposed), and
  "previous_batch" applies the merges learned on the preceding batch (the first
  batch uses `warmup_docs`), which makes the vocabulary independent of the
  scored text. merges=0 is the base tokenizer (the reference row).
  """
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from jaxtok.train.losses import LN2

  graphdef, params = nnx.split(base, nnx.Param)
  emb_in = np.asarray(base.embed.embedding.value, np.float32)
  tied = base.cfg.tie_embeddings
  emb_out = emb_in if tied else np.asarray(base.head.kernel.value.T, np.float32)
  hg, hstate = nnx.split(hypernet)
  tables = (jnp.asarray(emb_in),) + (() if tied else (jnp.asarray(emb_out),))

  @jax.jit
  def predict(state, ids):
    e_in, e_out = nnx.merge(hg, state)(ids, *tables)
    return e_in, (e_in if e_out is None else e_out)

  cache = EmbeddingCache(
    lambda ids: tuple(np.asarray(x) for x in predict(hstate, jnp.asarray(ids))),
    base_tok,
    hypernet.cfg.max_len,
  )
  sums = jax.jit(_lm_sums, static_argnums=0)
  max_new, v, d = max(merges), len(base_tok.vocab), emb_in.shape[1]

  def encode(part):
    return [
      np.concatenate([[base_tok.bos_id], ids, [base_tok.eos_id]]).astype(np.int32)
      for ids in base_tok.encode_batch(list(part))
    ]

  batches = [encode(docs[s : s + batch_docs]) for s in range(0, len(docs), batch_docs)]
  width = -(-max(len(x) for b in batches for x in b) // 64) * 64  # one compiled shape
  previous = encode(warmup_docs) if len(warmup_docs) else None

  def score(seqs, new):
    e_new_in, e_new_out = cache.get(new)
    pad = max_new - len(new)
    ext_in = np.concatenate([emb_in, e_new_in.reshape(-1, d), np.zeros((pad, d), np.float32)])
    ext_out = np.concatenate([emb_out, e_new_out.reshape(-1, d), np.zeros((pad, d), np.float32)])
    lengths = np.concatenate([base_tok.lengths, [len(b) for b in new], np.zeros(pad)])
    valid = np.arange(v + max_new) < v + len(new)
    out = sums(graphdef, params, ext_in, ext_out, valid, _rows(seqs, lengths, batch_docs, width))
    return np.array([float(out["loss_sum"]), float(out["bytes"]), float(out["tokens"])])

  rows = []
  for m in merges:
    modes = ["in_batch"] + (["previous_batch"] if m and previous is not None else [])
    for mode in modes:
      totals, prev = np.zeros(3), previous
      for seqs in batches:
        if mode == "in_batch":
          merged, new, _ = batch_merges(seqs, base_tok.vocab, m)
        else:
          _, new, pairs = batch_merges(prev, base_tok.vocab, m)
          merged = apply_merges(seqs, pairs, v)
          prev = seqs
        totals += score(merged, new)
      rows.append(
        {
          "merges": m,
          "mode": mode if m else "base",
          "tokens": totals[2],
          "bpb": totals[0] / LN2 / max(totals[1], 1.0),
          "bytes": totals[1],
        }
      )
  for r in rows:
    r["length_reduction"] = 1.0 - r["tokens"] / rows[0]["tokens"]
    r["bpb_change"] = r["bpb"] - rows[0]["bpb"]
  rows[-1]["hypernet_cache_misses"] = float(cache.misses)
  return rows


def _rows(seqs: Sequence[np.ndarray], lengths: np.ndarray, batch: int, t: int):
  """One sequence per row, padded to `t` tokens; `target_bytes` from `lengths`."""
  out = {k: np.full((batch, t), -1, np.int32) for k in ("inputs", "targets")}
  out["segment_ids"] = np.zeros((batch, t), np.int32)
  out["positions"] = np.zeros((batch, t), np.int32)
  for r, s in enumerate(seqs):
    n = len(s) - 1
    out["inputs"][r, :n] = s[:-1]
    out["targets"][r, :n] = s[1:]
    out["segment_ids"][r, :n] = 1
    out["positions"][r, :n] = np.arange(n)
  t_ = out["targets"]
  out["target_bytes"] = np.where(t_ >= 0, lengths[np.maximum(t_, 0)], 0).astype(np.int32)
  return out
