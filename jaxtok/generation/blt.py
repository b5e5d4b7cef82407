"""Cached, batched BLT generation.

Each row keeps, between bytes:
  * the entropy model's ring cache (its sliding window) and the incremental
    patcher's state, so the boundary before byte t+1 costs one decode step of
    the entropy model;
  * ring caches of the local encoder and decoder blocks;
  * the open patch: the running max of its bytes' states and their
    cross-attention keys/values (a patch closes without re-projecting its bytes);
  * the latent transformer's KV cache over closed patches (its own column count
    per row: rows close patches at different bytes);
  * the decoder's cross-attention keys/values of its latest latent;
  * the last bytes, for the hash n-gram ids of the next one (on device).
A byte costs one step of the entropy model, encoder and decoder; when some row
closes a patch, one latent step runs for the batch (rows that did not close
keep their caches), its attention over the closed patches computed for the closing
rows only, each reading its own filled slots (`attend_rows`). `prefill` fills all
of it from one forward over the prompts (`BLT.prefill`), equal to feeding them
byte by byte (`feed`, tested).

Columns: prompts are left-padded to one length, so all rows write the same
ring slot per byte; row b starts at column start[b] and its positions are
column - start[b].
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxtok import patching
from jaxtok.data import codec, device_hashing
from jaxtok.generation import loop
from jaxtok.generation.sampling import byte_vocab_allowed
from jaxtok.models.blt import BLT
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import (
  DTYPES,
  KVCache,
  RingCache,
  kv_cache_from_prefill,
  left_padded,
  ring_from_prefill,
)
from jaxtok.patching.entropy import entropy_from_logits


def ring_size(window: int | None, capacity: int) -> int:
  return capacity if window is None else min(window, capacity)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Static cache sizes of one call (columns = padded prompt + new bytes)."""

  columns: int
  latent: int  # patch slots of the latent cache
  patch: int  # bytes the open patch can hold


@struct.dataclass
class BLTCaches:
  col: jax.Array  # int32: the column of the next byte
  patcher: patching.PatcherState
  next_start_B: jax.Array  # bool: lookahead schemes, whether the next byte starts a patch
  em_cache: RingCache | None  # the entropy model's (entropy patching only)
  enc_cache: RingCache
  dec_cache: RingCache
  pool_BxD: jax.Array  # max of the open patch's first cross-attended byte states
  patch_kv: tuple[jax.Array, jax.Array]  # C x B x L x N x H: its bytes' cross-attention k/v
  patch_len_B: jax.Array  # int32: bytes in the open patch
  lat_cache: KVCache  # end [B]: closed patches per row
  dec_kv: tuple[jax.Array, jax.Array]  # X x B x k x N x H: the latest latent's
  has_latent_B: jax.Array  # bool: a patch has closed in this row
  history_BxW: jax.Array | None  # the last W byte ids (hash n-grams), 0 before the row


def _write_rows(buf_CxBxLxNxH, x_CxBx1xNxH, at_B):
  """Writes row b's x at slot at_B[b] of the patch buffer, in place (a scatter on the
  batch and slot axes; a vmap over rows would move the batch axis first, copying)."""
  rows = jnp.arange(at_B.shape[0])
  return buf_CxBxLxNxH.at[:, rows, at_B].set(x_CxBx1xNxH[:, :, 0].astype(buf_CxBxLxNxH.dtype))


def _select_rows(flag_B, new, old):
  """Per row: `new` where flag_B, else `old` (arrays with the batch on axis 1)."""
  pick = lambda a, b: jnp.where(jnp.reshape(flag_B, (1, -1) + (1,) * (a.ndim - 2)), a, b)
  return jax.tree.map(pick, new, old)


@dataclasses.dataclass(frozen=True)
class BLTDecoder:
  """The static half of a BLT (+ entropy model) for jit: graphs and the patching config."""

  graphdef: nnx.GraphDef
  em_graphdef: nnx.GraphDef | None
  pcfg: patching.PatchingConfig
  eos_id: int = codec.EOS_ID

  @property
  def patcher(self) -> patching.IncrementalPatcher:
    return patching.IncrementalPatcher(self.pcfg)

  def _models(self, params):
    model = nnx.merge(self.graphdef, params[0])
    em = None if self.em_graphdef is None else nnx.merge(self.em_graphdef, params[1])
    return model, em

  def _history(self, model: BLT, ids_BxT):
    """The last ids a row keeps for its hash n-grams (None without hash embeddings)."""
    c = model.cfg
    if not c.n_hash_tables:
      return None
    width = max(c.hash_ngram_sizes)
    return jnp.pad(ids_BxT, ((0, 0), (max(0, width - ids_BxT.shape[1]), 0)))[:, -width:]

  def _hash(self, model: BLT, history_BxW):
    c = model.cfg
    if not c.n_hash_tables:
      return None
    ids = device_hashing.newest_hash_ids(
      history_BxW,
      ngram_sizes=c.hash_ngram_sizes,
      n_hash_functions=c.hash_functions,
      vocab=c.hash_vocab,
    )
    return ids[:, None]  # B x 1 x K

  # --- empty caches, and one byte -------------------------------------------------------------

  def init(self, params, batch: int, sizes: Sizes) -> BLTCaches:
    """Empty caches (column 0 comes next), for feeding bytes one at a time."""
    model, em = self._models(params)
    cfg = model.cfg
    ring = ring_size(cfg.local_window, sizes.columns)
    enc_cache, lat_cache, dec_cache = model.init_caches(batch, ring, sizes.latent)
    em_cache = None
    if em is not None:
      em_cache = em.init_ring(batch, ring_size(em.cfg.sliding_window, sizes.columns))
    ps = self.patcher.init(batch)
    first = jnp.ones((batch,), bool)  # byte 0 always starts a patch
    if not self.patcher.needs_byte:  # the patcher decides byte 0 before it exists
      zeros = jnp.zeros((batch,), jnp.int32)
      ps, first = self.patcher.step(ps, zeros, None if em is None else zeros.astype(jnp.float32))
    dtype = DTYPES[cfg.dtype]
    nh, c = cfg.cross_attn_heads, len(cfg.encoder_cross_layers)
    patch_shape = (c, batch, sizes.patch, nh, cfg.d_local // nh)
    kv_shape = (len(cfg.decoder_cross_layers), batch, cfg.cross_attn_k, nh, cfg.d_local // nh)
    width = max(cfg.hash_ngram_sizes) if cfg.n_hash_tables else 0
    return BLTCaches(
      col=jnp.zeros((), jnp.int32),
      patcher=ps,
      next_start_B=first,
      em_cache=em_cache,
      enc_cache=enc_cache,
      dec_cache=dec_cache,
      pool_BxD=jnp.zeros((batch, cfg.d_local), dtype),
      patch_kv=(jnp.zeros(patch_shape, dtype), jnp.zeros(patch_shape, dtype)),
      patch_len_B=jnp.zeros((batch,), jnp.int32),
      lat_cache=lat_cache,
      dec_kv=(jnp.zeros(kv_shape, dtype), jnp.zeros(kv_shape, dtype)),
      has_latent_B=jnp.zeros((batch,), bool),
      history_BxW=jnp.zeros((batch, width), jnp.int32) if width else None,
    )

  def _close(self, model: BLT, st: BLTCaches, close_B) -> BLTCaches:
    """Rows in close_B: their open patch -> latent step -> the decoder's cross-attention k/v.

    Only the small results come out of the branch (skipped when no row closes); the
    latent cache is written after it, in place: every row at its `end`, which moves
    only in closing rows (the others' slot is rewritten when their patch closes)."""

    def run():
      h = model.patch_vector(st.pool_BxD, *st.patch_kv, st.patch_len_B)
      g, k, v = model.latent_step(h, st.lat_cache, close_B)
      return model.decoder_kv(g), k, v

    shapes = jax.eval_shape(run)
    skip = lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    dec_kv, k, v = jax.lax.cond(jnp.any(close_B), run, skip)
    return st.replace(
      lat_cache=st.lat_cache.append(k, v, close_B),
      dec_kv=_select_rows(close_B, dec_kv, st.dec_kv),
      has_latent_B=st.has_latent_B | close_B,
    )

  def step(self, params, st: BLTCaches, ids_B):
    """Feeds one byte per row at column `st.col`: (caches, logits [B, 260] of the next byte)."""
    model, em = self._models(params)
    patcher, t = self.patcher, st.col
    ids_Bx1 = ids_B[:, None].astype(jnp.int32)
    hashes = None
    if st.history_BxW is not None:
      st = st.replace(history_BxW=jnp.concatenate([st.history_BxW[:, 1:], ids_Bx1], axis=1))
      hashes = self._hash(model, st.history_BxW)

    # 1. Does this byte start a patch? Space patches: from the byte itself (then the previous
    # patch is complete: its latent is what this byte reads); others: decided a byte earlier.
    if patcher.needs_byte:
      ps, start = patcher.step(st.patcher, ids_B)
      st = self._close(model, st.replace(patcher=ps), start & (st.patcher.position > 0))
    else:
      start = st.next_start_B

    # 2. Local encoder; the open patch keeps the byte's pooled state and cross-attention k/v.
    x = model.embed(ids_Bx1, hashes)
    x, states_CxBx1xD, enc_cache = model.encode_step(x, t, st.enc_cache)
    k, v = model.patch_byte_kv(states_CxBx1xD)
    length = jnp.where(start, 0, st.patch_len_B)
    first = states_CxBx1xD[0, :, 0]
    st = st.replace(
      enc_cache=enc_cache,
      pool_BxD=jnp.where(start[:, None], first, jnp.maximum(st.pool_BxD, first)),
      patch_kv=(_write_rows(st.patch_kv[0], k, length), _write_rows(st.patch_kv[1], v, length)),
      patch_len_B=length + 1,
    )

    # 3. Lookahead schemes: decide the next byte's boundary; a finished patch closes now.
    if not patcher.needs_byte:
      h_next = None
      if em is not None:
        em_logits, em_cache = em.decode_ring(ids_Bx1, t, st.em_cache)
        h_next = entropy_from_logits(em_logits)[:, 0]
        st = st.replace(em_cache=em_cache)
      ps, next_start = patcher.step(st.patcher, ids_B, h_next)
      st = self._close(model, st.replace(patcher=ps, next_start_B=next_start), next_start)

    # 4. Local decoder: cross-attention to each row's latest latent, then byte self-attention.
    logits, dec_cache = model.decode_step(x, t, st.dec_kv, st.has_latent_B, st.dec_cache)
    return st.replace(dec_cache=dec_cache, col=t + 1), logits[:, 0]

  def feed(self, params, st: BLTCaches, ids_BxT):
    """`step` over T columns (a scan): (caches, logits [B, T, 260])."""
    st, logits = jax.lax.scan(lambda s, ids: self.step(params, s, ids), st, ids_BxT.T)
    return st, jnp.swapaxes(logits, 0, 1)

  # --- a prompt at once ----------------------------------------------------------------------

  def patch_prompt(self, params, ids_BxT, start_B, columns: int):
    """Phase 1 of `prefill`: the entropy model's ring, the patcher state after the prompts,
    the patch starts [B, N] (N = T + 1 with lookahead: the next byte's too), patches per row."""
    _, em = self._models(params)
    t = ids_BxT.shape[1]
    em_cache, entropies = None, None
    if em is not None:
      h, k, v = em.prefill(ids_BxT, start_B)
      em_cache = ring_from_prefill(k, v, start_B, ring_size(em.cfg.sliding_window, columns))
      next_h = entropy_from_logits(em.logits(h))  # H(x_{t+1} | x_<=t)
      entropies = jnp.pad(next_h, ((0, 0), (1, 0)))  # H(x_t | x_<t), t = 0 .. T
    ps, starts = self.patcher.prefill(ids_BxT, start_B, entropies)
    return em_cache, ps, starts, jnp.sum(starts[:, :t], axis=1)

  def prefill(self, params, ids_BxT, start_B, em_cache, ps, starts_BxN, sizes: Sizes):
    """Phase 2: one BLT forward over the prompts fills every cache: (caches, next logits)."""
    model, _ = self._models(params)
    cfg = model.cfg
    b, t = ids_BxT.shape
    seg, positions = left_padded(start_B, t)
    hashes = None
    if cfg.n_hash_tables:
      hashes = device_hashing.hash_ids(
        ids_BxT,
        seg,
        ngram_sizes=cfg.hash_ngram_sizes,
        n_hash_functions=cfg.hash_functions,
        vocab=cfg.hash_vocab,
      )
    p_slots = sizes.latent - (sizes.columns - t)  # the prompt's patch slots
    lookahead = not self.patcher.needs_byte  # starts_BxN has the next byte's column too
    out = model.prefill(
      ids_BxT,
      patch_starts=starts_BxN if lookahead else jnp.pad(starts_BxN, ((0, 0), (0, 1))),
      hash_ids=hashes,
      segment_ids=seg,
      positions=positions,
      max_patches=p_slots,
    )
    # Closed patches: every start after the row's first byte closes the patch before it
    # (with lookahead the next byte's start, column T, counts too).
    closed_B = jnp.sum(starts_BxN, axis=1) - 1
    cols = jnp.arange(t, dtype=jnp.int32)
    last_start = jnp.max(jnp.where(starts_BxN[:, :t], cols, -1), axis=1)
    length = t - last_start

    # The open patch: its bytes' cross-attended states, max-pooled, and their k/v.
    idx = jnp.minimum(last_start[:, None] + jnp.arange(sizes.patch), t - 1)
    states = jnp.take_along_axis(out.states_CxBxTxD, idx[None, :, :, None], axis=2)
    valid = (jnp.arange(sizes.patch) < length[:, None])[:, :, None]
    pool = jnp.max(jnp.where(valid, states[0], -jnp.inf), axis=1).astype(states.dtype)
    patch_kv = model.patch_byte_kv(states)

    lat_cache = kv_cache_from_prefill(*out.lat_kv, jnp.zeros((b,), jnp.int32), sizes.latent)
    lat_cache = lat_cache.replace(end=closed_B)  # the open patch's slot is rewritten when it closes
    latest = jnp.take_along_axis(out.g_BxPxDg, jnp.maximum(closed_B - 1, 0)[:, None, None], axis=1)
    ring = ring_size(cfg.local_window, sizes.columns)
    st = BLTCaches(
      col=jnp.asarray(t, jnp.int32),
      patcher=ps,
      next_start_B=starts_BxN[:, -1] if lookahead else jnp.ones((b,), bool),  # space: unused
      em_cache=em_cache,
      enc_cache=ring_from_prefill(*out.enc_kv, start_B, ring),
      dec_cache=ring_from_prefill(*out.dec_kv, start_B, ring),
      pool_BxD=pool,
      patch_kv=patch_kv,
      patch_len_B=length,
      lat_cache=lat_cache,
      dec_kv=model.decoder_kv(latest),
      has_latent_B=closed_B > 0,
      history_BxW=self._history(model, jnp.where(seg > 0, ids_BxT, 0)),
    )
    return st, out.logits_BxTxV[:, -1]

  def sizes(self, columns: int, latent: int) -> Sizes:
    """Cache sizes for `columns` columns and `latent` patch slots."""
    bound = [self.pcfg.max_patch_length] if self.pcfg.max_patch_length else []
    if self.pcfg.scheme == "static":
      bound.append(self.pcfg.patch_size)
    return Sizes(columns=columns, latent=latent, patch=min(bound + [columns]))


@functools.partial(jax.jit, static_argnames=("decoder", "columns"))
def _patch_prompt(decoder: BLTDecoder, params, ids_BxT, start_B, *, columns):
  return decoder.patch_prompt(params, ids_BxT, start_B, columns)


@functools.partial(jax.jit, static_argnames=("decoder", "sizes"))
def _prefill(decoder: BLTDecoder, params, ids_BxT, start_B, em_cache, ps, starts, *, sizes):
  return loop.start(*decoder.prefill(params, ids_BxT, start_B, em_cache, ps, starts, sizes))


@functools.partial(jax.jit, static_argnames=("decoder", "batch", "sizes"))
def _init(decoder: BLTDecoder, params, *, batch, sizes):
  return decoder.init(params, batch, sizes)


@functools.partial(jax.jit, static_argnames=("decoder",), donate_argnames=("st",))
def _feed(decoder: BLTDecoder, params, st, ids_BxT):
  return decoder.feed(params, st, ids_BxT)


class BLTGenerator(loop.Generator):
  """Batched cached generation with a BLT (see the module docstring).

  `prefill=False` feeds the prompts byte by byte instead of one forward
  (prompts of one length only; the reference the prefill is tested against).
  """

  def __init__(
    self,
    model: BLT,
    pcfg: patching.PatchingConfig,
    entropy_model: EntropyModel | None = None,
    *,
    max_len: int | None = None,
    prefill: bool = True,
  ):
    if pcfg.scheme == "entropy" and entropy_model is None:
      raise ValueError("entropy patching needs the entropy model (entropy_model=...)")
    patching.IncrementalPatcher(pcfg)  # top-k patching cannot generate: a clear error now
    if pcfg.lookahead != model.cfg.lookahead:
      raise ValueError(
        f"patching (scheme={pcfg.scheme!r}, lookahead={pcfg.lookahead}) does not match the "
        f"model's decoder alignment (model.lookahead={model.cfg.lookahead})"
      )
    self.model, self.max_len, self.use_prefill = model, max_len, prefill
    em = entropy_model if pcfg.scheme == "entropy" else None
    graphdef, params = nnx.split(model, nnx.Param)
    self.decoder = BLTDecoder(graphdef, None if em is None else em.graphdef, pcfg)
    self.params: Any = (params, None if em is None else em.params)
    self.allowed_V = byte_vocab_allowed()

  def encode(self, prompt: bytes) -> np.ndarray:
    return codec.encode(prompt, add_bos=True, add_eos=False)

  def id_bytes(self, i: int) -> bytes:
    return bytes([i - codec.OFFSET])

  def pad_length(self, longest: int) -> int:
    return super().pad_length(longest) if self.use_prefill else longest

  def feed(self, ids_BxT, columns: int) -> tuple[BLTCaches, jax.Array]:
    """Rows of one length fed byte by byte into empty caches of `columns` columns:
    (caches, logits [B, T, 260] after every byte)."""
    sizes = self.decoder.sizes(columns, columns)
    st = _init(self.decoder, self.params, batch=ids_BxT.shape[0], sizes=sizes)
    return _feed(self.decoder, self.params, st, jnp.asarray(ids_BxT))

  def prefill(self, ids_BxT, start_B, capacity) -> loop.Decoding:
    t = ids_BxT.shape[1]
    if not self.use_prefill:
      if np.any(start_B):
        raise ValueError("feeding byte by byte (prefill=False) needs prompts of one length")
      st, logits = self.feed(ids_BxT, capacity)
      return loop.start(st, logits[:, -1])
    em_cache, ps, starts, patches = _patch_prompt(
      self.decoder, self.params, ids_BxT, start_B, columns=capacity
    )
    # The prompt's patch slots, rounded like lengths; each new byte may add one patch.
    slots = loop.bucket(int(np.max(patches))) + capacity - t
    sizes = self.decoder.sizes(capacity, slots)
    return _prefill(self.decoder, self.params, ids_BxT, start_B, em_cache, ps, starts, sizes=sizes)
