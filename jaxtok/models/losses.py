"""Masked language-model losses, returned as sums so that they add up exactly
over micro-batches, devices and evaluation batches.

Bits-per-byte follows BLT: BPB = sum of cross-entropy (nats) / ln 2 / number of
bytes of text predicted, both over the targets that stand for bytes. For byte
models these are the real bytes (id >= 4); token models pass `target_bytes` (the
exact byte length of each target token), so their BPB is over the same bytes.
EOS stands for no byte: its cost is left out of the numerator as it is out of
the denominator, for every kind of model (byte LM, token LM, BLT, ZeTT), so BPB
is the cost of the document's bytes alone. Training still learns EOS: it is in
"loss_sum"; "bpb_nats" is the BPB numerator.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from jaxtok.data.codec import OFFSET

LN2 = math.log(2.0)


def token_ce_sums(
  logits_BxTxV: jax.Array, targets_BxT: jax.Array, target_bytes_BxT: jax.Array | None = None
) -> dict[str, jax.Array]:
  """{"loss_sum": Σ CE nats, "tokens": #predicted, "bytes": #bytes predicted,
  "bpb_nats": Σ CE nats of the targets that stand for bytes}."""
  mask = targets_BxT >= 0
  ce = optax.softmax_cross_entropy_with_integer_labels(
    logits_BxTxV.astype(jnp.float32), jnp.maximum(targets_BxT, 0)
  )
  if target_bytes_BxT is None:
    target_bytes_BxT = (targets_BxT >= OFFSET).astype(jnp.int32)
  return {
    "loss_sum": jnp.sum(jnp.where(mask, ce, 0.0)),
    "tokens": jnp.sum(mask).astype(jnp.float32),
    "bytes": jnp.sum(jnp.where(mask, target_bytes_BxT, 0)).astype(jnp.float32),
    "bpb_nats": jnp.sum(jnp.where(mask & (target_bytes_BxT > 0), ce, 0.0)),
  }


def lm_loss(model, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Next-token loss of a transformer on a packed batch."""
  logits = model(batch["inputs"], segment_ids=batch["segment_ids"], positions=batch["positions"])
  return token_ce_sums(logits, batch["targets"], batch.get("target_bytes"))


def foreign_embedding_sums(
  model, e_in_VxD: jax.Array, e_out_VxD: jax.Array, vocab_valid_V: jax.Array, batch
) -> dict[str, jax.Array]:
  """Next-token loss sums of a Transformer `model` that reads the rows of `e_in` and scores
  against `e_out`: embeddings of another vocabulary (e.g. predicted by a hypernetwork).

  Ids index the given tables; entries with `vocab_valid` False are never predicted.
  """
  x = jnp.take(e_in_VxD, jnp.maximum(batch["inputs"], 0), axis=0).astype(model.embed.dtype)
  h = model.hidden(x, segment_ids=batch["segment_ids"], positions=batch["positions"])
  logits = jnp.einsum("btd,vd->btv", h.astype(jnp.float32), e_out_VxD)
  logits = jnp.where(vocab_valid_V[None, None], logits, -1e9)
  return token_ce_sums(logits, batch["targets"], batch["target_bytes"])


def summarize(sums: dict[str, float]) -> dict[str, float]:
  """Mean loss per token and bits per byte from summed statistics."""
  tokens, nbytes = max(float(sums["tokens"]), 1.0), max(float(sums["bytes"]), 1.0)
  out = {"loss": float(sums["loss_sum"]) / tokens, "bpb": float(sums["bpb_nats"]) / LN2 / nbytes}
  out.update({k: float(v) for k, v in sums.items() if k not in ("loss_sum", "bpb_nats")})
  return out
