"""Generation with a transformer LM (`jaxtok.models.transformer.Transformer`): byte vocab,
or any token vocab through its `ByteTokenizer` (the ZeTT-transferred models)."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import jax
import numpy as np
from flax import nnx

from jaxtok.data import codec
from jaxtok.generation import loop
from jaxtok.generation.sampling import byte_vocab_allowed
from jaxtok.models.transformer import Transformer, kv_cache_from_prefill

if TYPE_CHECKING:  # only a type: generation never loads HF tokenizers itself
  from jaxtok.tokenizers.byte_view import ByteTokenizer


@dataclasses.dataclass(frozen=True)
class LMDecoder:
  """The static half of an LM for jit: its graph and EOS id (see `loop`)."""

  graphdef: nnx.GraphDef
  eos_id: int

  def prefill(self, params, ids_BxT, start_B, capacity: int):
    """(KV cache of `capacity` columns holding the prompts, logits after the last column)."""
    model = nnx.merge(self.graphdef, params)
    h, k, v = model.prefill(ids_BxT, start_B)
    return kv_cache_from_prefill(k, v, start_B, capacity), model.logits(h[:, -1])

  def step(self, params, cache, ids_B):
    logits, cache = nnx.merge(self.graphdef, params).decode(ids_B[:, None], cache)
    return cache, logits[:, 0]


@functools.partial(jax.jit, static_argnames=("decoder", "capacity"))
def _prefill(decoder: LMDecoder, params, ids_BxT, start_B, *, capacity):
  return loop.start(*decoder.prefill(params, ids_BxT, start_B, capacity))


class LMGenerator(loop.Generator):
  """Batched KV-cached generation from a Transformer.

  Byte vocab (260 ids) without a tokenizer; with `tokenizer` every id is its
  exact byte string, and a token's log-prob is put on its last byte (0 on the
  others), so a text's log-probs still sum to its log-likelihood.
  """

  def __init__(
    self, model: Transformer, tokenizer: ByteTokenizer | None = None, *, max_len: int | None = None
  ):
    v = model.cfg.vocab_size
    if tokenizer is None:
      if v != codec.VOCAB_SIZE:
        raise ValueError(f"a model with vocab {v} needs its tokenizer to generate bytes")
      self.bos_id, eos_id, self.allowed_V = codec.BOS_ID, codec.EOS_ID, byte_vocab_allowed()
      self._bytes = [bytes([i - codec.OFFSET]) if i >= codec.OFFSET else b"" for i in range(v)]
    else:
      if tokenizer.vocab_size != v:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids, the model {v}")
      self.bos_id, eos_id = tokenizer.bos_id, tokenizer.eos_id
      self.allowed_V = np.asarray(tokenizer.lengths) > 0  # no pad/bos/unk ...
      self.allowed_V[eos_id] = True  # ... but EOS ends a row
      self._bytes = list(tokenizer.vocab)
    self.tokenizer = tokenizer
    graphdef, self.params = nnx.split(model)
    self.decoder = LMDecoder(graphdef, int(eos_id))
    self.max_len = max_len

  def encode(self, prompt: bytes) -> np.ndarray:
    if self.tokenizer is None:
      body = codec.encode(prompt, add_bos=False, add_eos=False)
    else:
      body = self.tokenizer.encode(prompt)
    return np.concatenate([[self.bos_id], body]).astype(np.int32)

  def id_bytes(self, i: int) -> bytes:
    return self._bytes[i]

  def prefill(self, ids_BxT, start_B, capacity) -> loop.Decoding:
    return _prefill(self.decoder, self.params, ids_BxT, start_B, capacity=capacity)
