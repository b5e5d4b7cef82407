"""Bits per byte of one LM under different tokenizers, on the same text.

Every tokenizer encodes the same documents (whole, with its bos ... eos), the
documents are packed into rows of `seq_len` tokens, and every token after
bos is predicted. The denominator counts the exact bytes of the predicted
tokens, so it is the documents' byte count whatever the tokenizer: the bits
per byte of different tokenizers are directly comparable.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok.data import packing
from jaxtok.models.losses import lm_loss, summarize
from jaxtok.tokenizers.byte_view import ByteTokenizer


def eval_batches(
  tok: ByteTokenizer, docs: Sequence[bytes], *, seq_len: int, batch_size: int
) -> list[dict[str, np.ndarray]]:
  """Packed batches of `docs` under `tok`, with `target_bytes` for bits per byte."""
  it = packing.PackedBatches(
    list(docs),
    batch_size=batch_size,
    seq_len=seq_len,
    seed=0,
    shuffle=False,
    repeat=False,
    encode_fn=tok.make_encoder(),
  )
  return [tok.with_target_bytes(b) for b in it]


@functools.partial(jax.jit, static_argnums=0)
def _lm_sums(graphdef, params, batch):
  return lm_loss(nnx.merge(graphdef, params), batch)


def bits_per_byte(graphdef, params: nnx.State, batches: Sequence[dict]) -> dict[str, float]:
  """{"bpb", "loss", "tokens", "bytes"} of the model over `batches` (sums, then ratios)."""
  totals = None
  for b in batches:
    sums = _lm_sums(graphdef, params, {k: jnp.asarray(v) for k, v in b.items()})
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return summarize(jax.device_get(totals))


def bytes_per_token(tok: ByteTokenizer, docs: Sequence[bytes]) -> float:
  n = sum(len(ids) for ids in tok.encode_batch(list(docs)))
  return sum(len(d) for d in docs) / max(n, 1)
