"""Bits per byte of one LM under different tokenizers, on the same text.

Every tokenizer encodes the same documents (whole, with its bos ... eos), the
documents are packed into rows of `seq_len` tokens, and every token after
bos is predicted. The denominator counts the exact bytes of the predicted
tokens, so it is the documents' byte count whatever the tokenizer: the bits
per byte of different tokenizers are directly comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok.data import packing
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.train.losses import lm_loss, summarize
from jaxtok.train.steps import make_eval_step


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
  out = []
  for b in it:
    t = b["targets"]
    out.append({**b, "target_bytes": np.where(t >= 0, tok.lengths[np.maximum(t, 0)], 0)})
  return out


def with_embeddings(params: nnx.State, emb_in: jax.Array, emb_out: jax.Array | None) -> nnx.State:
  """A Transformer's params with its embedding (and untied head) replaced: another vocab."""
  flat = dict(nnx.to_flat_state(params))
  emb = flat[("embed", "embedding")]
  flat[("embed", "embedding")] = emb.replace(jnp.asarray(emb_in, emb.value.dtype))
  if ("head", "kernel") in flat:
    if emb_out is None:
      raise ValueError("the model has an untied output head: pass output embeddings")
    head = flat[("head", "kernel")]
    flat[("head", "kernel")] = head.replace(jnp.asarray(emb_out, head.value.dtype).T)
  return nnx.from_flat_state(flat)


_EVAL_STEPS: dict = {}


def bits_per_byte(graphdef, params: nnx.State, batches: Sequence[dict]) -> dict[str, float]:
  """{"bpb", "loss", "tokens", "bytes"} of the model over `batches` (sums, then ratios)."""
  step = _EVAL_STEPS.get(graphdef)
  if step is None:
    step = _EVAL_STEPS[graphdef] = make_eval_step(graphdef, lm_loss)
  totals = None
  for b in batches:
    sums = step(params, {k: jnp.asarray(v) for k, v in b.items()})
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return summarize(jax.device_get(totals))


def bytes_per_token(tok: ByteTokenizer, docs: Sequence[bytes]) -> float:
  n = sum(len(ids) for ids in tok.encode_batch(list(docs)))
  return sum(len(d) for d in docs) / max(n, 1)
