"""Sample a fresh tokenizer every training step, as ZeTT does.

The hypernetwork must generalise to tokenizers it never saw, so it is trained
on a stream of random ones: the substrings of the pre-tokens of a sliding
window of recent batches are counted (numpy, no Rust build step), their log
frequencies are perturbed with Gaussian noise, the top-k become the pieces of
a unigram tokenizer whose scores start as those noisy log frequencies and are
refined by `em_steps` hard-EM passes over the window (raw substring counts
favour short pieces: every piece's count includes its uses inside longer
ones). All 256
bytes are always pieces, so every text can be tokenized; the pieces are
byte-level, so the result is lossless on any bytes.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from jaxtok.tokenizers.bpe import SPECIALS, _unicode_to_byte
from jaxtok.tokenizers.byte_view import ByteTokenizer, _byte_level_table

_MAX_WORD_BYTES = 64  # longer pre-tokens (long runs of spaces, hashes) are cut for counting


def _byte_to_char() -> list[str]:
  out = [""] * 256
  for c, b in _unicode_to_byte().items():
    out[b] = c
  return out


def pretokens(texts: Iterable[bytes | str]) -> collections.Counter:
  """Counts of the byte-level pre-tokens (GPT-2 regex) of `texts`, as bytes."""
  pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  table = _byte_level_table()
  counts: collections.Counter = collections.Counter()
  for t in texts:
    s = t.decode("utf-8", errors="replace") if isinstance(t, bytes) else t
    counts.update(w for w, _ in pre.pre_tokenize_str(s))
  return collections.Counter({w.translate(table).encode("latin-1"): n for w, n in counts.items()})


def substring_counts(
  words: Sequence[bytes], weights: Sequence[float], max_len: int
) -> tuple[list[bytes], np.ndarray]:
  """Every substring of 2..max_len bytes of `words`, with its frequency (weighted by word count)."""
  if not words:
    return [], np.zeros(0)
  width = min(max(len(w) for w in words), _MAX_WORD_BYTES)
  mat = np.zeros((len(words), width), np.uint8)
  lens = np.zeros(len(words), np.int64)
  for i, w in enumerate(words):
    w = w[:width]
    mat[i, : len(w)] = np.frombuffer(w, np.uint8)
    lens[i] = len(w)
  weights = np.asarray(weights, np.float64)
  pieces: list[bytes] = []
  freqs: list[np.ndarray] = []
  for n in range(2, min(max_len, width) + 1):
    windows = np.lib.stride_tricks.sliding_window_view(mat, n, axis=1)  # W x (width-n+1) x n
    valid = np.arange(windows.shape[1])[None, :] + n <= lens[:, None]
    rows = np.ascontiguousarray(windows[valid])
    if not len(rows):
      break
    keys = rows.view(np.dtype((np.void, n))).ravel()
    uniq, inverse = np.unique(keys, return_inverse=True)
    row_weight = np.broadcast_to(weights[:, None], valid.shape)[valid]
    freqs.append(np.bincount(inverse.ravel(), weights=row_weight, minlength=len(uniq)))
    pieces.extend(u.tobytes() for u in uniq)
  return pieces, np.concatenate(freqs)


def unigram_tokenizer(pieces: Sequence[bytes], scores: Sequence[float]) -> Tokenizer:
  """A byte-level unigram tokenizer over `pieces` (+ <pad>, <s>, </s> at ids 0, 1, 2)."""
  tok = _bare_unigram(pieces, scores)
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([AddedToken(s, special=True) for s in SPECIALS])
  return tok


def _bare_unigram(pieces: Sequence[bytes], scores: Sequence[float]) -> Tokenizer:
  """The unigram model alone: segments one pre-token (given as byte-level characters)."""
  chars = _byte_to_char()
  vocab = [(s, 0.0) for s in SPECIALS]
  vocab += [("".join(chars[b] for b in p), float(s)) for p, s in zip(pieces, scores)]
  return Tokenizer(models.Unigram(vocab, unk_id=None, byte_fallback=False))


class TokenizerSampler:
  """Unigram tokenizers sampled from noisy substring frequencies of recent text.

  `add(texts)` pushes one batch of text into a window of the last `window`
  batches; `sample(rng)` draws a vocabulary size in [min_vocab, max_vocab] and
  returns a ByteTokenizer built from the window.
  """

  def __init__(
    self,
    *,
    min_vocab: int,
    max_vocab: int,
    max_piece_bytes: int = 16,
    noise_std: float = 1.0,
    window: int = 4,
    em_steps: int = 1,
  ):
    if not 256 + len(SPECIALS) < min_vocab <= max_vocab:
      raise ValueError(
        f"sampler vocab sizes must satisfy {256 + len(SPECIALS)} < min_vocab <= max_vocab, "
        f"got min_vocab={min_vocab}, max_vocab={max_vocab}"
      )
    if max_piece_bytes < 2 or window < 1 or noise_std < 0 or em_steps < 0:
      raise ValueError(
        "sampler needs max_piece_bytes >= 2, window >= 1, noise_std >= 0, em_steps >= 0; got "
        f"{max_piece_bytes}, {window}, {noise_std}, {em_steps}"
      )
    self.min_vocab, self.max_vocab = min_vocab, max_vocab
    self.max_piece_bytes = max_piece_bytes
    self.noise_std = noise_std
    self.em_steps = em_steps
    self._window: collections.deque = collections.deque(maxlen=window)

  def add(self, texts: Iterable[bytes | str]) -> None:
    self._window.append(pretokens(texts))

  def clear(self) -> None:
    self._window.clear()

  def sample(self, rng: np.random.Generator) -> ByteTokenizer:
    if not self._window:
      raise ValueError("the sampler has seen no text yet: call add(texts) first")
    counts: collections.Counter = collections.Counter()
    for c in self._window:
      counts.update(c)
    words = list(counts)
    pieces, freq = substring_counts(words, [counts[w] for w in words], self.max_piece_bytes)
    byte_freq = np.ones(256)  # add-one: every byte is a piece, seen or not
    for w, n in counts.items():
      byte_freq += n * np.bincount(np.frombuffer(w, np.uint8), minlength=256)
    total = freq.sum() + byte_freq.sum()
    k = int(rng.integers(self.min_vocab, self.max_vocab + 1)) - 256 - len(SPECIALS)
    keep = np.flatnonzero(freq >= 2)  # a substring seen once is noise, not a unit
    noisy = np.log(freq[keep] / total) + self.noise_std * rng.standard_normal(len(keep))
    top = keep[np.argsort(-noisy, kind="stable")[:k]]
    top_scores = noisy[np.argsort(-noisy, kind="stable")[:k]]
    all_pieces = [bytes([b]) for b in range(256)] + [pieces[i] for i in top]
    scores = np.concatenate([np.log(byte_freq / total), top_scores])
    if self.em_steps:
      chars = _byte_to_char()
      word_text = ["".join(chars[b] for b in w) for w in words]
      weight = np.array([counts[w] for w in words], np.float64)
    for _ in range(self.em_steps):
      # Hard EM: re-score each piece by how often the Viterbi segmentation of the window
      # uses it, so frequent long pieces take the probability mass of their parts.
      encs = _bare_unigram(all_pieces, scores).encode_batch(word_text, add_special_tokens=False)
      ids = np.concatenate([e.ids for e in encs]) - len(SPECIALS)
      reps = np.repeat(weight, [len(e.ids) for e in encs])
      used = np.bincount(ids, weights=reps, minlength=len(all_pieces)) + 0.1  # none impossible
      scores = np.log(used / used.sum())
    return ByteTokenizer(unigram_tokenizer(all_pieces, scores), name="sampled-unigram")
