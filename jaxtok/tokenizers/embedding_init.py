"""Embeddings of a pretrained LM for a new tokenizer: the baselines and the hypernetwork.

Every method returns (input embeddings [V_target, D], output embeddings
[V_target, D] or None when the base model ties them). Special tokens
(pad/bos/eos) always copy the base model's tokens of the same role.

* random: per-dimension normal with the base table's mean and std.
* lexical: tokens whose bytes are a base token copy it; the rest random.
* FVT (Gee et al., 2022): mean of the base embeddings of the token's
  decomposition by the base tokenizer.
* FOCUS-style (Dobler & de Melo, 2023): overlapping tokens copy; every other
  token is a sparsemax-weighted mix of the overlapping tokens' embeddings,
  weighted by similarity in an auxiliary embedding space. FOCUS uses fastText
  trained on target-tokenized text; offline we use PPMI + SVD word vectors of
  the target tokens on target text (the same kind of distributional signal).
  Tokens that never occur in that text fall back to FVT.
* hypernet: the ZeTT hypernetwork's prediction (optionally with lexical copies of the
  tokens that exist in the base vocabulary: "hypernet+lex").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxtok.tokenizers import decompose as dec
from jaxtok.tokenizers.byte_view import ByteTokenizer

METHODS = ("hypernet", "fvt", "focus", "lexical", "random")


class BaseEmbeddings:
  """The base model's tables and tokenizer: the inputs every init method needs."""

  def __init__(self, base: ByteTokenizer, emb_in, emb_out=None):
    self.tok = base
    self.emb_in = np.asarray(emb_in, np.float32)
    self.emb_out = None if emb_out is None else np.asarray(emb_out, np.float32)

  @property
  def tables(self):
    return [self.emb_in] if self.emb_out is None else [self.emb_in, self.emb_out]

  def pack(self, tables):
    return tables[0], (tables[1] if self.emb_out is not None else None)


def _copy_specials(target: ByteTokenizer, base: BaseEmbeddings, tables):
  src = dec.special_copies(target, base.tok)
  rows = np.flatnonzero(src >= 0)
  for t, b in zip(tables, base.tables):
    t[rows] = b[src[rows]]
  return base.pack(tables)


def random_init(target: ByteTokenizer, base: BaseEmbeddings, seed: int = 0):
  rng = np.random.default_rng(seed)
  tables = [
    (rng.standard_normal((target.vocab_size, b.shape[1])) * b.std(0) + b.mean(0)).astype(np.float32)
    for b in base.tables
  ]
  return _copy_specials(target, base, tables)


def lexical_init(target: ByteTokenizer, base: BaseEmbeddings, seed: int = 0):
  tables = list(random_init(target, base, seed))[: len(base.tables)]
  shared = dec.shared_ids(target, base.tok)
  rows = np.flatnonzero(shared >= 0)
  for t, b in zip(tables, base.tables):
    t[rows] = b[shared[rows]]
  return _copy_specials(target, base, tables)


def fvt_init(target: ByteTokenizer, base: BaseEmbeddings, max_len: int = dec.DEFAULT_MAX_LEN):
  ids = dec.decompose(target, base.tok, max_len)
  valid = ids >= 0
  n = valid.sum(1, keepdims=True)
  tables = []
  for b in base.tables:
    summed = np.where(valid[..., None], b[np.maximum(ids, 0)], 0.0).sum(1)
    tables.append(np.where(n > 0, summed / np.maximum(n, 1), b.mean(0)).astype(np.float32))
  return _copy_specials(target, base, tables)


def hypernet_init(
  target: ByteTokenizer,
  base: BaseEmbeddings,
  predict,
  max_len: int,
  chunk: int = 4096,
  *,
  copy_shared: bool = False,
):
  """The hypernetwork's embeddings for every token of `target` (in chunks of `chunk` tokens).

  `predict` maps decompositions into base tokens ([chunk, max_len] ids, -1 padded) to the
  predicted (input, output or None) embeddings (`jaxtok.models.hypernet.predictor`).
  `copy_shared` keeps the base embeddings of tokens that exist in the base vocabulary
  (lexical copy) and uses the hypernetwork for the rest.
  """
  ids = dec.decompose(target, base.tok, max_len)
  outs_in, outs_out = [], []
  for s in range(0, len(ids), chunk):
    part = ids[s : s + chunk]
    pad = chunk - len(part)  # one compiled shape for every chunk
    e_in, e_out = predict(np.pad(part, ((0, pad), (0, 0)), constant_values=-1))
    outs_in.append(e_in[: chunk - pad])
    if e_out is not None:
      outs_out.append(e_out[: chunk - pad])
  tables = [np.concatenate(outs_in)] + ([np.concatenate(outs_out)] if outs_out else [])
  if copy_shared:
    shared = dec.shared_ids(target, base.tok)
    rows = np.flatnonzero(shared >= 0)
    for t, b in zip(tables, base.tables):
      t[rows] = b[shared[rows]]
  return _copy_specials(target, base, tables)


# --- FOCUS-style ----------------------------------------------------------------------------


def sparsemax(z: np.ndarray) -> np.ndarray:
  """Sparsemax (Martins & Astudillo, 2016) of each row of `z`: a sparse probability vector."""
  z = np.asarray(z, np.float64)
  zs = -np.sort(-z, axis=-1)
  k = np.arange(1, z.shape[-1] + 1)
  cum = np.cumsum(zs, axis=-1)
  support = 1 + k * zs > cum
  kz = support.sum(-1, keepdims=True)
  tau = (np.take_along_axis(cum, kz - 1, axis=-1) - 1) / kz
  return np.maximum(z - tau, 0.0)


def cooccurrence_vectors(
  tok: ByteTokenizer, texts: Sequence[bytes], *, dim: int = 64, window: int = 2, min_count: int = 3
) -> tuple[np.ndarray, np.ndarray]:
  """(token ids, unit vectors [n, dim]): PPMI + truncated SVD of token co-occurrences."""
  import scipy.sparse as sp
  from scipy.sparse.linalg import svds

  seqs = tok.encode_batch(list(texts))
  counts = np.bincount(np.concatenate(seqs), minlength=tok.vocab_size) if seqs else np.zeros(1)
  keep = np.flatnonzero(counts >= min_count)
  if len(keep) <= dim + 1:
    return keep, np.zeros((len(keep), 0), np.float32)
  index = np.full(tok.vocab_size, -1, np.int64)
  index[keep] = np.arange(len(keep))
  rows, cols = [], []
  for s in seqs:
    j = index[s]
    for off in range(1, window + 1):
      a, b = j[:-off], j[off:]
      ok = (a >= 0) & (b >= 0)
      rows += [a[ok], b[ok]]
      cols += [b[ok], a[ok]]
  r, c = np.concatenate(rows), np.concatenate(cols)
  m = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(len(keep),) * 2).tocsr()
  total = m.sum()
  row_sum = np.asarray(m.sum(1)).ravel()
  m = m.tocoo()
  pmi = np.log(m.data * total / (row_sum[m.row] * row_sum[m.col]))
  ppmi = sp.coo_matrix((np.maximum(pmi, 0), (m.row, m.col)), shape=m.shape).tocsr()
  u, s, _ = svds(ppmi, k=min(dim, len(keep) - 2))
  vec = u * np.sqrt(s)
  vec /= np.linalg.norm(vec, axis=1, keepdims=True) + 1e-8
  return keep, vec.astype(np.float32)


def focus_init(
  target: ByteTokenizer,
  base: BaseEmbeddings,
  texts: Sequence[bytes],
  *,
  max_len: int = dec.DEFAULT_MAX_LEN,
  dim: int = 64,
):
  tables = list(fvt_init(target, base, max_len))[: len(base.tables)]
  shared = dec.shared_ids(target, base.tok)
  ids, vec = cooccurrence_vectors(target, texts, dim=dim)
  if vec.shape[1]:
    is_shared = shared[ids] >= 0
    anchors, anchor_vec = ids[is_shared], vec[is_shared]
    new, new_vec = ids[~is_shared], vec[~is_shared]
    for s in range(0, len(new), 1024):
      w = sparsemax(new_vec[s : s + 1024] @ anchor_vec.T)  # [n, anchors]
      for t, b in zip(tables, base.tables):
        t[new[s : s + 1024]] = (w @ b[shared[anchors]]).astype(np.float32)
  rows = np.flatnonzero(shared >= 0)
  for t, b in zip(tables, base.tables):
    t[rows] = b[shared[rows]]
  return _copy_specials(target, base, tables)
