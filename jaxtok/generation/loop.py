"""The decode loop every model shares: on device, N ids per call; and its host driver.

A model's decoder (`lm.LMDecoder`, `blt.BLTDecoder`) is a static, hashable
description (graph definitions and configs) with two pure functions of its
parameters: `prefill` (a batch of left-padded prompts in one forward) and
`step` (one id per row -> the next logits). `decode_chunk` runs
sample -> step in a `lax.while_loop` inside one jitted call, with the state
donated so caches are updated in place; it stops early on device once every
row has sampled EOS. Compilations are cached by jax.jit on (decoder, sampling,
shapes): prompts are left-padded to a few bucket lengths, so a later call with
a prompt of the same bucket compiles nothing.

`Generator.generate` is the host side: buckets and pads the prompts, prefills,
calls `decode_chunk` until every row is done, streams each chunk's bytes, and
cuts at stop strings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxtok.generation import sampling as sampling_lib
from jaxtok.generation.sampling import SamplingConfig

DEFAULT_CHUNK = 32  # ids per decode call: the streaming granularity


@struct.dataclass
class Decoding:
  """A batch being decoded: the decoder's state and what the next sample is drawn from."""

  state: Any  # the decoder's caches
  logits_BxV: jax.Array  # float32: the next id's logits
  done_B: jax.Array  # bool: EOS sampled
  count: jax.Array  # int32: ids sampled so far (the key index of the next one)


def start(state, logits_BxV) -> Decoding:
  b = logits_BxV.shape[0]
  return Decoding(state, logits_BxV, jnp.zeros((b,), bool), jnp.zeros((), jnp.int32))


@functools.partial(
  jax.jit, static_argnames=("decoder", "sampling", "chunk"), donate_argnames=("dec",)
)
def decode_chunk(decoder, params, dec: Decoding, keys_Bx2, allowed_V, n_steps, *, sampling, chunk):
  """Up to `n_steps` (<= chunk) ids per row, on device.

  Returns (state, ids [B, chunk] (-1 where a row had finished or the loop had
  stopped), their log-probs [B, chunk], steps run).
  """
  b = dec.done_B.shape[0]

  def cond(carry):
    i, d, _, _ = carry
    return (i < n_steps) & ~jnp.all(d.done_B)

  def body(carry):
    i, d, ids, lps = carry
    keys = jax.vmap(jax.random.fold_in)(keys_Bx2, jnp.broadcast_to(d.count, (b,)))
    nxt = sampling_lib.sample(d.logits_BxV, keys, allowed_V, sampling)
    lp = sampling_lib.log_prob(d.logits_BxV, nxt)
    ids = ids.at[:, i].set(jnp.where(d.done_B, -1, nxt))
    lps = lps.at[:, i].set(jnp.where(d.done_B, 0.0, lp))
    state, logits = decoder.step(params, d.state, nxt)
    done = d.done_B | (nxt == decoder.eos_id)
    return i + 1, Decoding(state, logits, done, d.count + 1), ids, lps

  init = (jnp.zeros((), jnp.int32), dec, jnp.full((b, chunk), -1, jnp.int32), jnp.zeros((b, chunk)))
  steps, dec, ids, lps = jax.lax.while_loop(cond, body, init)
  return dec, ids, lps, steps


# --- host side ---------------------------------------------------------------------------------


def bucket(n: int, minimum: int = 16) -> int:
  """n rounded up to one of 8 lengths per octave (>= minimum): few compilations, <= 12.5% pad."""
  if n <= minimum:
    return minimum
  step = max(minimum, 1 << (n.bit_length() - 4))
  return -(-n // step) * step


def left_pad(rows: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids [B, length] with row b right-aligned, 0 before it; start column of each row)."""
  ids = np.zeros((len(rows), length), np.int32)
  for b, r in enumerate(rows):
    ids[b, length - len(r) :] = r
  return ids, np.asarray([length - len(r) for r in rows], np.int32)


@dataclasses.dataclass
class Generation:
  """One prompt's continuation."""

  text: bytes  # exact bytes (invalid UTF-8 included; decode with errors="replace" to show)
  logprobs: np.ndarray  # float32 [len(text)]: natural log-prob of each byte (see Generator)
  ids: np.ndarray  # the generated ids (byte ids, or tokens), EOS excluded
  stop_reason: str  # "eos", "stop" (a stop string) or "length"


class _Row:
  """One row's output as chunks arrive: bytes, per-byte log-probs, stop strings."""

  def __init__(self, stop: Sequence[bytes]):
    self.stop, self.text, self.logprobs, self.ids = stop, bytearray(), [], []
    self.reason: str | None = None

  def add(self, tok: int, data: bytes, logprob: float) -> None:
    """Appends one id's bytes; its log-prob goes on its last byte (the others get 0)."""
    before = len(self.text)
    self.ids.append(tok)
    self.text += data
    self.logprobs += [0.0] * (len(data) - 1) + [logprob] if data else []
    for s in self.stop:  # a stop string ending in the new bytes ends the row after it
      at = self.text.find(s, max(0, before - len(s) + 1))
      if at >= 0:
        end = at + len(s)
        del self.text[end:]
        del self.logprobs[end:]
        self.reason = "stop"
        return

  def result(self) -> Generation:
    return Generation(
      bytes(self.text),
      np.asarray(self.logprobs, np.float32),
      np.asarray(self.ids, np.int32),
      self.reason or "length",
    )


class Generator:
  """Batched, cached generation for one model; subclasses say how ids map to bytes.

  Subclasses set `decoder` (static), `params`, `allowed_V`, and implement
  `encode(prompt) -> ids` (BOS first), `id_bytes(id) -> bytes` and
  `prefill(ids_BxT, start_B, capacity) -> Decoding` (caches of `capacity` columns).
  """

  decoder: Any
  params: Any
  allowed_V: np.ndarray
  max_len: int | None = None  # columns (prompt + new ids) a caller allows; None = any

  def encode(self, prompt: bytes) -> np.ndarray:
    raise NotImplementedError

  def id_bytes(self, i: int) -> bytes:
    raise NotImplementedError

  def prefill(self, ids_BxT: np.ndarray, start_B: np.ndarray, capacity: int) -> Decoding:
    raise NotImplementedError

  def pad_length(self, longest: int) -> int:
    """The column count prompts are left-padded to: a bucket, so compilations are shared."""
    return bucket(longest)

  def start(self, prompts: Sequence[bytes | str], max_new: int) -> Decoding:
    """Prefilled caches of a batch of prompts (left-padded to a bucket length)."""
    if isinstance(max_new, bool) or not isinstance(max_new, int | np.integer) or max_new <= 0:
      raise ValueError(f"max_new_bytes / max_new_tokens must be a positive int, got {max_new!r}")
    if not prompts:
      raise ValueError("prompts: give at least one prompt")
    rows = [self.encode(p.encode() if isinstance(p, str) else bytes(p)) for p in prompts]
    longest = max(len(r) for r in rows)
    if self.max_len is not None and longest + max_new > self.max_len:
      raise ValueError(
        f"a prompt of {longest} ids (BOS included) + {max_new} new ids exceeds "
        f"max_len={self.max_len} of this generator"
      )
    ids, start = left_pad(rows, self.pad_length(longest))
    # Caches hold the padded prompt and the new ids, rounded up too: one compilation per bucket.
    return self.prefill(ids, start, bucket(ids.shape[1] + max_new))

  def generate(
    self,
    prompts: Sequence[bytes | str],
    max_new: int,
    *,
    sampling: SamplingConfig = SamplingConfig(),
    seed: int | Sequence[int] = 0,
    stop: Sequence[bytes | str] = (),
    chunk: int = DEFAULT_CHUNK,
    on_bytes: Callable[[int, bytes], None] | None = None,
  ) -> list[Generation]:
    """Continues every prompt by up to `max_new` ids (stops at EOS or a stop string).

    `on_bytes(row, data)` receives each row's new bytes after every chunk (streaming).
    """
    if chunk < 1:
      raise ValueError(f"chunk must be >= 1, got {chunk}")
    stops = [s.encode() if isinstance(s, str) else bytes(s) for s in stop]
    if any(not s for s in stops):
      raise ValueError("stop: empty stop strings are not allowed")
    dec = self.start(prompts, max_new)
    keys = sampling_lib.row_keys(seed, len(prompts))
    allowed = jnp.asarray(self.allowed_V)
    rows = [_Row(stops) for _ in prompts]
    left = max_new
    while left > 0 and any(r.reason is None for r in rows):
      n = min(chunk, left)
      dec, ids, lps, _ = decode_chunk(
        self.decoder, self.params, dec, keys, allowed, n, sampling=sampling, chunk=chunk
      )
      ids, lps = np.asarray(ids), np.asarray(lps)
      left -= n
      for b, row in enumerate(rows):
        before = len(row.text)
        for tok, lp in zip(ids[b, :n], lps[b, :n]):
          if row.reason is not None or tok < 0:
            break
          if tok == self.decoder.eos_id:
            row.reason = "eos"
            break
          row.add(int(tok), self.id_bytes(int(tok)), float(lp))
        if on_bytes is not None and len(row.text) > before:
          on_bytes(b, bytes(row.text[before:]))
    return [r.result() for r in rows]
