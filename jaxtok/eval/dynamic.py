"""Dynamic tokenization (Feher et al., 2024) scored: sequence length and bits per byte of a
base LM whose batches are merged by `jaxtok.tokenizers.dynamic`, with embeddings of the merged
tokens from the ZeTT hypernetwork.

Caveat: merges learned on a batch are chosen from that batch's own text, so its output
vocabulary carries information about the text being scored (the bits per byte come out
optimistic). `evaluate_dynamic` therefore also scores each batch with the merges learned on
the *previous* batch, a vocabulary that depends only on text already seen: that row is a
strict code length.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from jaxtok.data import packing
from jaxtok.models import hypernet as hypernet_lib
from jaxtok.models.losses import LN2, foreign_embedding_sums
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.dynamic import EmbeddingCache, apply_merges, batch_merges


@functools.partial(jax.jit, static_argnums=0)
def _sums(graphdef, params, e_in, e_out, valid, batch):
  return foreign_embedding_sums(nnx.merge(graphdef, params), e_in, e_out, valid, batch)


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
  graphdef, params = nnx.split(base, nnx.Param)
  tables = base.embedding_tables()
  predict = hypernet_lib.predictor(hypernet, *tables)
  emb_in = np.asarray(tables[0], np.float32)
  emb_out = emb_in if tables[1] is None else np.asarray(tables[1], np.float32)

  def predict_both(ids):
    e_in, e_out = predict(ids)
    return e_in, (e_in if e_out is None else e_out)

  cache = EmbeddingCache(predict_both, base_tok, hypernet.cfg.max_len)
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
    out = _sums(graphdef, params, ext_in, ext_out, valid, _rows(seqs, lengths, batch_docs, width))
    return np.array([float(out["bpb_nats"]), float(out["bytes"]), float(out["tokens"])])

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
  return packing.with_target_bytes(out, lengths)
