"""Byte sampling (greedy / temperature / top-p) from a BLT or a byte Transformer.

The cached BLT decoder (`BLTGenerator`) keeps, for one sequence:
  * the entropy model's KV cache (a ring of its sliding window) and the
    incremental patcher's state, so the boundary before byte t+1 is decided
    from one decode step of the entropy model;
  * ring KV caches (the local window) for the local encoder and decoder blocks;
  * the byte states of the current patch (for its pooling and cross-attention);
  * the latent transformer's KV cache over patches;
  * the decoder's cross-attention keys/values of the latest latent.
Each byte runs one decode step of the entropy model, encoder and decoder, and a
patch that closes runs one step of the latent transformer, so the work per
byte does not grow with the sequence (up to the latent's attention over its
cached patches, and the fixed ring sizes). `generate_uncached` is the reference
the BLT paper's code implements: re-patch and re-run the whole prefix per byte.
Both produce the same bytes (tests/test_generate.py).

Cached generation decodes one sequence at a time (a patch closing is a branch).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxtok import patching
from jaxtok.data import codec, hashing
from jaxtok.models import entropy_model
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.blt import BLT
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import KVCache, RingCache, Transformer
from jaxtok.patching.entropy import entropy_from_logits, per_byte_entropies
from jaxtok.tokenizers.byte_view import ByteTokenizer

# Ids a sampler may produce: bytes and EOS (not BOS, BOE, the BPE delimiter or PAD).
_ALLOWED = np.zeros(codec.VOCAB_SIZE, bool)
_ALLOWED[codec.OFFSET :] = True
_ALLOWED[codec.EOS_ID] = True


def sample(logits_V: jax.Array, key: jax.Array, temperature: float, top_p: float) -> jax.Array:
  """One id from [V] logits: argmax at temperature 0, else softmax(logits / T) cut to top-p."""
  logits = jnp.where(jnp.asarray(_ALLOWED), logits_V.astype(jnp.float32), -jnp.inf)
  if temperature == 0.0:
    return jnp.argmax(logits).astype(jnp.int32)
  logits = logits / temperature
  if top_p < 1.0:
    probs = jax.nn.softmax(logits)
    order = jnp.argsort(-probs)
    sorted_p = probs[order]
    # Keep the smallest prefix of the sorted ids whose mass reaches top_p.
    keep_sorted = jnp.cumsum(sorted_p) - sorted_p < top_p
    keep = jnp.zeros_like(keep_sorted).at[order].set(keep_sorted)
    logits = jnp.where(keep, logits, -jnp.inf)
  return jax.random.categorical(key, logits).astype(jnp.int32)


# --- cached BLT decoding -------------------------------------------------------------------------


def ring_size(window: int | None, max_len: int) -> int:
  return max_len if window is None else min(window, max_len)


@struct.dataclass
class BLTState:
  t: jax.Array  # int32: index of the next byte
  patcher: patching.PatcherState
  next_start: jax.Array  # [1] bool: lookahead schemes, whether byte t starts a patch
  em_cache: Any  # RingCache of the entropy model (None without one)
  enc_cache: RingCache
  dec_cache: RingCache
  patch_buf: jax.Array  # C x 1 x L x D: byte states of the current patch, per cross layer
  patch_len: jax.Array  # int32: bytes in the current patch
  lat_cache: KVCache  # of the latent transformer
  dec_kv: tuple[jax.Array, jax.Array]  # X x 1 x k x N x H: decoder cross-attention k/v
  has_latent: jax.Array  # bool: whether a patch has closed yet


class BLTGenerator:
  """Cached byte-by-byte decoding of one sequence with a BLT (see the module docstring)."""

  def __init__(
    self,
    model: BLT,
    pcfg: patching.PatchingConfig,
    entropy_model: EntropyModel | None = None,
    *,
    max_len: int,
  ):
    if pcfg.scheme == "entropy" and entropy_model is None:
      raise ValueError("entropy patching needs the entropy model")
    if pcfg.lookahead != model.cfg.lookahead:
      raise ValueError("the patching config does not match the model's decoder alignment")
    self.cfg, self.pcfg, self.max_len = model.cfg, pcfg, max_len
    self.patcher = patching.IncrementalPatcher(pcfg)
    self.graphdef, self.params = nnx.split(model, nnx.Param)
    self.em = entropy_model if pcfg.scheme == "entropy" else None
    if self.em is not None:
      self.em_graphdef, self.em_params = self.em.graphdef, self.em.params
    # The longest patch the config allows bounds the patch buffer.
    bound = [pcfg.max_patch_length] if pcfg.max_patch_length else []
    if pcfg.scheme == "static":
      bound.append(pcfg.patch_size)
    self.patch_cap = min(bound + [max_len])
    self._init = jax.jit(self._init_fn)
    self._step = jax.jit(self._step_fn, donate_argnums=1, static_argnames=("temperature", "top_p"))

  # -- state --

  def init(self) -> BLTState:
    return self._init(self.params)

  def _init_fn(self, params) -> BLTState:
    cfg = self.cfg
    model = nnx.merge(self.graphdef, params)
    em_cache = None
    if self.em is not None:
      em = self.em.model
      em_cache = em.init_ring(1, ring_size(em.cfg.sliding_window, self.max_len))
    enc_cache, lat_cache, dec_cache = model.init_caches(
      1, ring_size(cfg.local_window, self.max_len), self.max_len
    )
    nh = cfg.cross_attn_heads
    kv_shape = (len(cfg.decoder_cross_layers), 1, cfg.cross_attn_k, nh, cfg.d_local // nh)
    dtype = jnp.dtype(cfg.dtype)
    ps = self.patcher.init(1)
    ps, first = self.patcher.step(ps, jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.float32))
    if self.patcher.needs_byte:
      ps, first = self.patcher.init(1), jnp.ones((1,), bool)  # decided per byte
    return BLTState(
      t=jnp.zeros((), jnp.int32),
      patcher=ps,
      next_start=first,
      em_cache=em_cache,
      enc_cache=enc_cache,
      dec_cache=dec_cache,
      patch_buf=jnp.zeros((len(cfg.encoder_cross_layers), 1, self.patch_cap, cfg.d_local), dtype),
      patch_len=jnp.zeros((), jnp.int32),
      lat_cache=lat_cache,
      dec_kv=(jnp.zeros(kv_shape, dtype), jnp.zeros(kv_shape, dtype)),
      has_latent=jnp.zeros((), bool),
    )

  # -- one byte --

  def _close_patch(self, model: BLT, st: BLTState) -> BLTState:
    """Encodes the current patch, steps the latent, refreshes the decoder's cross-attention k/v."""
    h = model.encode_patch(st.patch_buf, st.patch_len)
    g, lat_cache = model.latent_step(h, st.lat_cache)
    dec_kv = model.decoder_kv(g)
    return st.replace(lat_cache=lat_cache, dec_kv=dec_kv, has_latent=jnp.ones((), bool))

  def _step_fn(
    self, params, st: BLTState, byte_id, hash_ids_K, key, em_params, *, temperature, top_p
  ):
    model = nnx.merge(self.graphdef, params)
    t = st.t
    ids = jnp.reshape(byte_id, (1,)).astype(jnp.int32)
    close = functools.partial(self._close_patch, model)

    # 1. Does byte t start a patch? Space patches: from the byte itself; others: decided at t-1.
    if self.patcher.needs_byte:
      ps, start = self.patcher.step(st.patcher, ids)
      st = st.replace(patcher=ps)
      # The previous patch is complete: its latent is what byte t reads.
      st = jax.lax.cond(start[0] & (t > 0), close, lambda s: s, st)
    else:
      start = st.next_start
    st = st.replace(patch_len=jnp.where(start[0], 0, st.patch_len))

    # 2. Local encoder, one byte; keep its states for the patch's cross-attention.
    x = model.embed(ids[:, None], None if hash_ids_K is None else hash_ids_K[None, None])
    x, states_Cx1x1xD, enc_cache = model.encode_step(x, t, st.enc_cache)
    buf = jax.lax.dynamic_update_slice_in_dim(st.patch_buf, states_Cx1x1xD, st.patch_len, axis=2)
    st = st.replace(enc_cache=enc_cache, patch_buf=buf, patch_len=st.patch_len + 1)

    # 3. Lookahead schemes: decide byte t+1's boundary now; a finished patch closes before decoding.
    if not self.patcher.needs_byte:
      h_next = None
      if self.em is not None:
        em = nnx.merge(self.em_graphdef, em_params)
        em_logits, em_cache = em.decode_ring(ids[:, None], t, st.em_cache)
        h_next = entropy_from_logits(em_logits)[:, 0]
        st = st.replace(em_cache=em_cache)
      ps, next_start = self.patcher.step(st.patcher, ids, h_next)
      st = st.replace(patcher=ps, next_start=next_start)
      st = jax.lax.cond(next_start[0], close, lambda s: s, st)

    # 4. Local decoder: cross-attend to the latest latent, then byte self-attention.
    logits, dec_cache = model.decode_step(x, t, st.dec_kv, st.has_latent, st.dec_cache)
    st = st.replace(dec_cache=dec_cache, t=t + 1)
    logits = logits[0, 0]
    return st, sample(logits, key, temperature, top_p), logits

  def step(self, st, byte_id: int, hash_ids_K, key, *, temperature=0.0, top_p=1.0):
    """Feeds byte t; returns (state, sampled id of byte t+1, logits)."""
    em_params = self.em_params if self.em is not None else None
    hk = None if hash_ids_K is None else jnp.asarray(hash_ids_K, jnp.int32)
    return self._step(
      self.params,
      st,
      jnp.asarray(byte_id, jnp.int32),
      hk,
      key,
      em_params,
      temperature=temperature,
      top_p=top_p,
    )


class _HashWindow:
  """Hash ids of the newest byte from the last max(n) bytes (host, int64)."""

  def __init__(self, cfg):
    self.cfg = cfg
    self.width = max(cfg.hash_ngram_sizes) if cfg.n_hash_tables else 0
    self.hist: list[int] = []

  def push(self, byte_id: int):
    if not self.width:
      return None
    self.hist = (self.hist + [int(byte_id)])[-self.width :]
    row = np.asarray([self.hist], np.int64)
    c = self.cfg
    ids = hashing.hash_ids(
      row, ngram_sizes=c.hash_ngram_sizes, n_hash_functions=c.hash_functions, vocab=c.hash_vocab
    )
    return ids[0, -1]


def _prompt_ids(prompt: bytes, max_new_bytes: int) -> np.ndarray:
  if max_new_bytes < 0:
    raise ValueError(f"max_new_bytes must be >= 0, got {max_new_bytes}")
  return codec.encode(prompt, add_bos=True, add_eos=False)


def _sampling_loop(ids: np.ndarray, max_new_bytes: int, feed, seed: int) -> bytes:
  """Feeds the prompt, then samples up to `max_new_bytes` (stops at EOS).

  `feed(byte_id, key)` consumes one byte and returns the id sampled for the
  next one with `key`; generated byte i is always sampled with fold_in(seed key, i).
  """
  base = jax.random.PRNGKey(seed)
  nxt = None
  for b in ids:  # the prompt, one byte at a time; only the last sample is used
    nxt = feed(int(b), jax.random.fold_in(base, 0))
  out: list[int] = []
  for i in range(max_new_bytes):
    b = int(nxt)
    if b == codec.EOS_ID:
      break
    out.append(b)
    if i + 1 < max_new_bytes:
      nxt = feed(b, jax.random.fold_in(base, i + 1))
  return codec.decode(np.asarray(out, np.int32))


def generate_blt(
  model: BLT,
  pcfg: patching.PatchingConfig,
  prompt: bytes,
  max_new_bytes: int,
  *,
  entropy_model: EntropyModel | None = None,
  temperature: float = 0.0,
  top_p: float = 1.0,
  seed: int = 0,
  generator: BLTGenerator | None = None,
) -> bytes:
  """Cached BLT sampling. `generator` reuses compiled steps across calls of equal max_len."""
  ids = _prompt_ids(prompt, max_new_bytes)
  gen = generator or BLTGenerator(model, pcfg, entropy_model, max_len=len(ids) + max_new_bytes)
  if len(ids) + max_new_bytes > gen.max_len:
    raise ValueError(f"prompt + max_new_bytes exceed the generator's max_len {gen.max_len}")
  hw = _HashWindow(model.cfg)
  state = {"st": gen.init()}

  def feed(b, key):
    state["st"], nxt, _ = gen.step(
      state["st"], b, hw.push(b), key, temperature=temperature, top_p=top_p
    )
    return nxt

  return _sampling_loop(ids, max_new_bytes, feed, seed)


# --- the uncached reference ----------------------------------------------------------------------


def _bucket(n: int) -> int:
  return max(16, 1 << (n - 1).bit_length())


class UncachedBLT:
  """Next-byte logits by re-patching and re-running the whole prefix (the reference's way).

  The prefix is padded to a power of two, or to `pad_to` (padding is masked
  and, by causality, changes nothing), so compilations are shared between lengths.
  """

  def __init__(
    self, model: BLT, pcfg: patching.PatchingConfig, entropy_model=None, *, pad_to: int = 0
  ):
    self.pad_to = pad_to  # > 0: always pad to this length (one compilation)
    if pcfg.scheme == "entropy" and entropy_model is None:
      raise ValueError("entropy patching needs the entropy model")
    self.model, self.pcfg, self.em = model, pcfg, entropy_model
    self.graphdef, self.params = nnx.split(model, nnx.Param)

    def fwd(params, ids, seg, pos, hash_ids, starts, last):
      m = nnx.merge(self.graphdef, params)
      logits = m(
        ids,
        patch_starts=starts,
        hash_ids=hash_ids,
        segment_ids=seg,
        positions=pos,
        max_patches=ids.shape[1],
      )
      return logits[0, last]

    self._fwd = jax.jit(fwd)
    self._starts = jax.jit(functools.partial(patching.patch_starts, pcfg))

  def next_logits(self, ids: np.ndarray) -> jax.Array:
    n = len(ids)
    tb = self.pad_to if self.pad_to > n else _bucket(n + 1)
    x = np.full((1, tb), codec.PAD_ID, np.int32)
    x[0, :n] = ids
    seg = (np.arange(tb) < n).astype(np.int32)[None]
    pos = np.arange(tb, dtype=np.int32)[None]
    entropies = None
    if self.pcfg.scheme == "entropy":
      entropies = per_byte_entropies(self.em.next_entropies(x, seg, pos))
    # Column n is the unknown next byte: its boundary may depend on the prefix only.
    x_n = np.concatenate([x, [[codec.PAD_ID]]], axis=1)
    seg_n = np.concatenate([seg, [[0]]], axis=1)
    seg_n[0, n] = 1
    pos_n = np.arange(tb + 1, dtype=np.int32)[None]
    starts = self._starts(x_n, pos_n, seg_n, entropies)
    c = self.model.cfg
    hash_ids = None
    if c.n_hash_tables:
      hash_ids = hashing.hash_ids(
        x,
        seg,
        ngram_sizes=c.hash_ngram_sizes,
        n_hash_functions=c.hash_functions,
        vocab=c.hash_vocab,
      )
    return self._fwd(self.params, x, seg, pos, hash_ids, starts, n - 1)


def generate_blt_uncached(
  model: BLT,
  pcfg: patching.PatchingConfig,
  prompt: bytes,
  max_new_bytes: int,
  *,
  entropy_model: EntropyModel | None = None,
  temperature: float = 0.0,
  top_p: float = 1.0,
  seed: int = 0,
  reference: UncachedBLT | None = None,
) -> bytes:
  """The same sampling as `generate_blt`, re-running the whole prefix for every byte."""
  ids = list(_prompt_ids(prompt, max_new_bytes))
  ref = reference or UncachedBLT(model, pcfg, entropy_model)
  prefix: list[int] = []
  pick = jax.jit(functools.partial(sample, temperature=temperature, top_p=top_p))

  def feed(b, key):
    prefix.append(b)
    return pick(ref.next_logits(np.asarray(prefix, np.int32)), key)

  return _sampling_loop(np.asarray(ids), max_new_bytes, feed, seed)


# --- byte transformers ---------------------------------------------------------------------------


def generate_transformer(
  model: Transformer,
  prompt: bytes,
  max_new_bytes: int,
  *,
  temperature: float = 0.0,
  top_p: float = 1.0,
  seed: int = 0,
) -> bytes:
  """Sampling from a byte-level Transformer with its KV cache (Transformer.decode)."""
  if model.cfg.vocab_size != codec.VOCAB_SIZE:
    raise ValueError("generate_transformer samples bytes: the model must have the byte vocab")
  ids = _prompt_ids(prompt, max_new_bytes)
  graphdef, params = nnx.split(model, nnx.Param)

  @functools.partial(jax.jit, donate_argnums=1)
  def step(params, cache, tok, key):
    logits, cache = nnx.merge(graphdef, params).decode(tok[None, None], cache)
    return cache, sample(logits[0, -1], key, temperature, top_p)

  state = {"cache": model.init_cache(1, len(ids) + max_new_bytes)}

  def feed(b, key):
    state["cache"], nxt = step(params, state["cache"], jnp.asarray(b, jnp.int32), key)
    return nxt

  return _sampling_loop(ids, max_new_bytes, feed, seed)


def load_for_generation(workdir: str):
  """(kind, model, patching config, entropy model) of a training workdir."""
  model, config = workdir_lib.restore(workdir)
  if isinstance(model, BLT):
    pcfg, em = entropy_model.patching_from_workdir(workdir)
    return "blt", model, pcfg, em
  if isinstance(model, Transformer) and not config.data.get("tokenizer"):
    return "transformer", model, None, None
  raise ValueError(f"{workdir}: generation supports BLTs and byte-level transformers")


# --- token models ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _decode(graphdef, state, tokens_BxT, cache):
  return nnx.merge(graphdef, state).decode(tokens_BxT, cache)


def generate_text(
  model: Transformer,
  tok: ByteTokenizer,
  prompt: bytes | str,
  *,
  max_new_tokens: int = 32,
  temperature: float = 0.0,
  seed: int = 0,
) -> bytes:
  """Continues `prompt` with a token model's KV cache: greedy (temperature 0) or sampled."""
  ids = np.concatenate([[tok.bos_id], tok.encode(prompt)]).astype(np.int32)
  graphdef, state = nnx.split(model)
  cache = model.init_cache(1, len(ids) + max_new_tokens)
  logits, cache = _decode(graphdef, state, jnp.asarray(ids)[None], cache)
  rng = np.random.default_rng(seed)
  out: list[int] = []
  for _ in range(max_new_tokens):
    last = np.asarray(logits[0, -1], np.float64)
    last[tok.lengths == 0] = -np.inf  # no pad/bos/unk; eos is handled below
    last[tok.eos_id] = np.asarray(logits[0, -1])[tok.eos_id]
    if temperature > 0:
      p = np.exp((last - last.max()) / temperature)
      nxt = int(rng.choice(len(p), p=p / p.sum()))
    else:
      nxt = int(np.argmax(last))
    if nxt == tok.eos_id:
      break
    out.append(nxt)
    logits, cache = _decode(graphdef, state, jnp.asarray([[nxt]], jnp.int32), cache)
  return tok.decode(out)
