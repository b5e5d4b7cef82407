"""Patch-level training (Shao, Meng, Zhou, 2024) for any jaxtok token or byte LM.

A patch is K consecutive tokens. In patch mode the model reads one vector per
patch, the mean of its K token embeddings (no new parameters), at position =
patch index, and the single output distribution of patch i is trained to
predict every token of patch i + 1: loss = mean over k of -log p(x_{(i+1)K+k}).
The first λ of the token budget runs in patch mode, the rest in ordinary token
mode with the weights kept and the optimizer restarted; a patch step costs
about 1/K of a token step, so the whole run costs λ/K + 1 - λ.

Batches. A patch step reads the same packed batch as a token step (B rows of T
tokens) laid out as B/K rows of K·T tokens = T patches: consecutive rows of a
`PackedBatches` batch are consecutive windows of one token stream, and the last
target of a row links it to the next row, so the long rows are exact stream
windows. Tokens per step and model positions per row are then the same in both
modes, and a patch step does 1/K of the work.

Documents. Packing lays documents end to end, so a patch may straddle a
document boundary. Documents are found from the target links alone (target j
is PAD exactly when token j + 1 is not the next token of the same document):
- a patch whose K tokens are not one unbroken run of one document (it straddles
  a boundary or holds padding) is masked: it gets an attention segment of its
  own, so no other patch attends to it, and it predicts nothing;
- target k of a patch is kept only while the chain of links from the patch to
  it is unbroken: tokens after the document's end are not predicted (its EOS
  is);
- positions count patches from the first whole patch of a document piece.
This loses, per document, the one straddling patch and the < K tokens before
its first whole patch; per row, targets k >= 1 of the last patch (they lie in
the next batch). With K = 1 nothing is lost and the loss is exactly the
ordinary next-token loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok.data.codec import OFFSET, PAD_ID
from jaxtok.models.transformer import Transformer
from jaxtok.train.phases import Phase


def validate(config) -> None:
  """Checks config.train.patch_level against the batch shape; messages name the field."""
  pl, d, t = config.train.patch_level, config.data, config.train
  k, frac = pl.K, pl.fraction
  if not isinstance(k, int) or k < 0:
    raise ValueError(f"config.train.patch_level.K={k!r}: must be an integer >= 0 (0 = off)")
  if not 0.0 <= frac < 1.0:
    raise ValueError(
      f"config.train.patch_level.fraction={frac!r}: must be in [0, 1) (the share of the "
      "token budget trained on patches; the rest is token-level)"
    )
  rows = d.batch_size // jax.process_count()
  if k and rows % (k * t.grad_accum):
    raise ValueError(
      f"config.train.patch_level.K={k}: a patch step lays the {rows} rows of a batch out as "
      f"{rows}/K longer rows, so data.batch_size per process ({rows}) must be divisible by "
      f"K x train.grad_accum = {k * t.grad_accum}"
    )
  m = config.mesh
  shards = m.fsdp * (m.data if m.data > 0 else jax.device_count() // (m.fsdp * m.tensor))
  if k and (d.batch_size // k) % shards:
    raise ValueError(
      f"config.train.patch_level.K={k}: the {d.batch_size // k} rows of a patch batch do not "
      f"split over the {shards} data-parallel shards of config.mesh"
    )


def long_rows(batch: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
  """B x T packed rows -> B/K x K·T stream windows (inputs, targets, target_bytes).

  Segment ids and positions of the short rows are dropped: a document that runs
  across a row boundary is one piece in the long row, found from the targets.
  """
  out = {}
  for name in ("inputs", "targets", "target_bytes"):
    if name in batch:
      x = batch[name]
      out[name] = x.reshape(x.shape[0] // k, k * x.shape[1])
  return out


def patch_layout(inputs_BxN: jax.Array, targets_BxN: jax.Array, k: int) -> dict[str, jax.Array]:
  """Patches of `k` tokens of packed rows, with masks and positions (see the module doc).

  Returns ids_BxPxK (patch tokens), targets_BxPxK (tokens of the next patch),
  valid_BxPxK (targets that count), segment_ids_BxP and positions_BxP.
  """
  b, n = inputs_BxN.shape
  if n % k:
    raise ValueError(f"a row of {n} tokens does not split into patches of {k}")
  p = n // k
  link_BxN = targets_BxN >= 0  # token j + 1 continues token j's document
  ids_BxPxK = inputs_BxN.reshape(b, p, k)
  whole_BxP = (ids_BxPxK[..., 0] >= 0) & jnp.all(link_BxN.reshape(b, p, k)[..., : k - 1], -1)
  # Token k of patch i + 1 is the target of token (i+1)K - 1 + k: shift by K - 1.
  shifted = jnp.concatenate([targets_BxN, jnp.full((b, k - 1), PAD_ID, targets_BxN.dtype)], 1)
  targets_BxPxK = shifted[:, k - 1 :].reshape(b, p, k)
  unbroken_BxPxK = jnp.cumsum(targets_BxPxK < 0, axis=-1) == 0
  valid_BxPxK = whole_BxP[..., None] & unbroken_BxPxK
  # Document pieces: a piece starts where the link into a token is broken.
  idx = jnp.arange(n, dtype=jnp.int32)
  starts_BxN = jnp.concatenate([jnp.ones((b, 1), bool), ~link_BxN[:, :-1]], 1)
  piece_BxN = jnp.cumsum(starts_BxN, axis=1, dtype=jnp.int32)
  first_BxN = jax.lax.cummax(jnp.where(starts_BxN, idx, 0), axis=1)
  own = n + 1 + jnp.arange(p, dtype=jnp.int32)  # segments that match no other patch
  return dict(
    ids_BxPxK=ids_BxPxK,
    targets_BxPxK=targets_BxPxK,
    valid_BxPxK=valid_BxPxK,
    segment_ids_BxP=jnp.where(whole_BxP, piece_BxN[:, ::k], own),
    positions_BxP=(idx - first_BxN)[:, ::k] // k,
  )


def patch_loss(model: Transformer, batch: dict[str, jax.Array], k: int) -> dict[str, jax.Array]:
  """Summed patch-level loss of long rows: {"loss_sum", "tokens", "bytes"} like `lm_loss`.

  `tokens` counts the predicted tokens, so loss_sum / tokens is the mean over
  patches of the mean over k, and loss_sum / ln 2 / bytes a bits-per-byte.
  """
  lay = patch_layout(batch["inputs"], batch["targets"], k)
  emb_BxPxD = jnp.mean(model.embed(lay["ids_BxPxK"]), axis=2)
  logits_BxPxV = model(
    embeddings=emb_BxPxD, segment_ids=lay["segment_ids_BxP"], positions=lay["positions_BxP"]
  ).astype(jnp.float32)
  targets, valid = lay["targets_BxPxK"], lay["valid_BxPxK"]
  # The same formula as optax's integer-label cross-entropy, for K labels at once.
  label_logits = jnp.take_along_axis(logits_BxPxV, jnp.maximum(targets, 0), axis=-1)
  nll_BxPxK = jax.nn.logsumexp(logits_BxPxV, axis=-1)[..., None] - label_logits
  if "target_bytes" in batch:
    b, n = batch["target_bytes"].shape
    pad = jnp.zeros((b, k - 1), batch["target_bytes"].dtype)
    nbytes = jnp.concatenate([batch["target_bytes"], pad], 1)[:, k - 1 :].reshape(targets.shape)
  else:
    nbytes = (targets >= OFFSET).astype(jnp.int32)
  return {
    "loss_sum": jnp.sum(jnp.where(valid, nll_BxPxK, 0.0)),
    "tokens": jnp.sum(valid).astype(jnp.float32),
    "bytes": jnp.sum(jnp.where(valid, nbytes, 0)).astype(jnp.float32),
  }


def make_phases(task, config) -> list[Phase]:
  """[patch phase over the first λ of train.steps, token phase over the rest]."""
  validate(config)
  pl, steps = config.train.patch_level, config.train.steps
  k = pl.K
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  if not isinstance(model, Transformer):
    raise ValueError(
      f"config.train.patch_level: needs a jaxtok Transformer LM (token embeddings in, logits "
      f"out); config.model.name={config.model.name!r} builds a {type(model).__name__}"
    )
  patch_steps = int(round(pl.fraction * steps))
  if patch_steps >= steps:
    raise ValueError(
      f"config.train.patch_level.fraction={pl.fraction}: leaves no token-level step of "
      f"train.steps={steps}; the model must finish on tokens"
    )
  return [
    Phase(
      name="patch",
      steps=patch_steps,
      loss_fn=lambda m, b: patch_loss(m, b, k),
      flops=task.flops.scaled(1.0 / k),  # one position per K tokens, same row length
      transform=lambda b: long_rows(b, k),
      cost=1.0 / k,
    ),
    Phase("train", steps - patch_steps, task.loss_fn, task.flops),
  ]
