"""The reference BLT decode: re-patch and re-run the whole prefix for every byte.

This is what the BLT paper's code does (no caches). It shares nothing with the
cached path but the model: hash ids come from the host (`data/hashing.py`),
patches from `patching.patch_starts`, logits from `BLT.forward`. Tests check
that cached generation produces its bytes and log-probs; the benchmark times it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok import patching
from jaxtok.data import codec, hashing
from jaxtok.generation import loop
from jaxtok.generation import sampling as sampling_lib
from jaxtok.generation.sampling import SamplingConfig
from jaxtok.models.blt import BLT
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.patching.entropy import per_byte_entropies


def _bucket(n: int) -> int:
  return max(16, 1 << (n - 1).bit_length())


class UncachedBLT:
  """Next-byte logits of one sequence by re-patching and re-running its whole prefix.

  The prefix is padded to a power of two, or to `pad_to` (padding is masked
  and, by causality, changes nothing), so compilations are shared between lengths.
  """

  def __init__(
    self,
    model: BLT,
    pcfg: patching.PatchingConfig,
    entropy_model: EntropyModel | None = None,
    *,
    pad_to: int = 0,
  ):
    if pcfg.scheme == "entropy" and entropy_model is None:
      raise ValueError("entropy patching needs the entropy model (entropy_model=...)")
    self.pad_to = pad_to  # > 0: always pad to this length (one compilation)
    self.model, self.pcfg, self.em = model, pcfg, entropy_model
    graphdef, self.params = nnx.split(model, nnx.Param)

    def fwd(params, ids, seg, pos, hash_ids, starts, last):
      m = nnx.merge(graphdef, params)
      kw = dict(patch_starts=starts, hash_ids=hash_ids, segment_ids=seg, positions=pos)
      return m(ids, max_patches=ids.shape[1], **kw)[0, last]

    self._fwd = jax.jit(fwd)
    self._starts = jax.jit(functools.partial(patching.patch_starts, pcfg))

  def next_logits(self, ids: np.ndarray) -> jax.Array:
    """[260] logits of the byte after `ids` (BOS first)."""
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


@functools.partial(jax.jit, static_argnames="sampling")
def _pick(logits_V, key, allowed_V, *, sampling):
  nxt = sampling_lib.sample(logits_V[None], key[None], allowed_V, sampling)
  return nxt[0], sampling_lib.log_prob(logits_V[None], nxt)[0]


def generate_blt_uncached(
  reference: UncachedBLT,
  prompt: bytes,
  max_new_bytes: int,
  *,
  sampling: SamplingConfig = SamplingConfig(),
  key: jax.Array | None = None,
) -> loop.Generation:
  """The sampling of the cached generators (byte i drawn with fold_in(key, i)), uncached."""
  if max_new_bytes <= 0:
    raise ValueError(f"max_new_bytes must be positive, got {max_new_bytes}")
  key = sampling_lib.row_keys(0, 1)[0] if key is None else key
  allowed = jnp.asarray(sampling_lib.byte_vocab_allowed())
  prefix = list(codec.encode(prompt, add_bos=True, add_eos=False))
  out, logprobs, reason = [], [], "length"
  for i in range(max_new_bytes):
    logits = reference.next_logits(np.asarray(prefix, np.int32))
    nxt, lp = _pick(logits, jax.random.fold_in(key, i), allowed, sampling=sampling)
    if int(nxt) == codec.EOS_ID:
      reason = "eos"
      break
    out.append(int(nxt))
    logprobs.append(float(lp))
    prefix.append(int(nxt))
  return loop.Generation(
    codec.decode(np.asarray(out, np.int32)),
    np.asarray(logprobs, np.float32),
    np.asarray(out, np.int32),
    reason,
  )
