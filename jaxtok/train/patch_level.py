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

BLT (`config.train.patch_level.blt_latent=True`, new: no paper has done it).
The same schedule applied to a Byte Latent Transformer's latent (global)
transformer: in the patch phase it reads groups of K consecutive patches, the
mean of their K patch vectors, and the local decoder predicts every byte of the
next group from that one latent (plus its own byte context, as always): byte t
reads group floor((j + 1) / K) - 1 where j is the patch it reads in a plain
BLT, the last group whose patches all end at or before t. Rows keep their
shape (same bytes per step, P/K latent positions); a group that mixes
documents or holds empty patch slots is masked like a straddling token patch
(bytes that would read it are predicted by the local models alone). Only the
per-latent work shrinks (the latent, the decoder's projection of it), so the
cost of a patch step comes from the FLOP model (about encoder + decoder +
global / K). K = 1 is exactly the plain BLT.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok import sharding as shd
from jaxtok.data.codec import OFFSET, PAD_ID
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.blt import BLT, blt_flops
from jaxtok.models.flops import Flops
from jaxtok.models.losses import token_ce_sums
from jaxtok.models.transformer import Transformer
from jaxtok.train.phases import Phase


def enabled(config) -> bool:
  pl = config.train.get("patch_level")
  return pl is not None and bool(pl.get("K", 0)) and bool(pl.get("fraction", 0.0))


def validate(config) -> None:
  """Checks config.train.patch_level against the batch shape; messages name the field."""
  pl, d, t = config.train.patch_level, config.data, config.train
  k, frac = pl.K, pl.fraction
  if pl.get("blt_latent", False):
    if config.model.get("name") != "blt":
      raise ValueError(
        f"config.train.patch_level.blt_latent=True: needs a BLT (config.model.name='blt'), "
        f"got {config.model.get('name')!r}"
      )
    k = 1  # BLT rows keep their shape: K only groups latent positions
  if not isinstance(pl.K, int) or pl.K < 0:
    raise ValueError(f"config.train.patch_level.K={pl.K!r}: must be an integer >= 0 (0 = off)")
  if not 0.0 <= frac < 1.0:
    raise ValueError(
      f"config.train.patch_level.fraction={frac!r}: must be in [0, 1) (the share of the "
      "token budget trained on patches; the rest is token-level)"
    )
  rows = d.batch_size // jax.process_count()
  if k > 1 and rows % (k * t.grad_accum):
    raise ValueError(
      f"config.train.patch_level.K={k}: a patch step lays the {rows} rows of a batch out as "
      f"{rows}/K longer rows, so data.batch_size per process ({rows}) must be divisible by "
      f"K x train.grad_accum = {k * t.grad_accum}"
    )
  m = config.mesh
  data = m.data if m.data > 0 else jax.device_count() // (m.fsdp * m.tensor)
  rules = shd.parse_rules(m.get("rules", "default"))
  shards = shd.batch_shards(dict(data=data, fsdp=m.fsdp, tensor=m.tensor), rules)
  if k > 1 and (d.batch_size // k) % shards:
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
  """Summed patch-level loss of long rows: {"loss_sum", "tokens", "bytes", "bpb_nats"} like
  `lm_loss`.

  `tokens` counts the predicted tokens, so loss_sum / tokens is the mean over
  patches of the mean over k, and bpb_nats / ln 2 / bytes a bits-per-byte.
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
    "bpb_nats": jnp.sum(jnp.where(valid & (nbytes > 0), nll_BxPxK, 0.0)),  # EOS: as lm_loss
  }


def blt_group_layout(lay, segment_ids_BxT: jax.Array, k: int) -> dict[str, jax.Array]:
  """Groups of `k` patch slots of a BLT patch layout for the latent (see the module doc).

  whole_BxG: groups of k used slots of one document; segment_ids_BxG: their
  document (masked groups get a segment of their own); patch_seg_BxG: g + 1 for
  groups bytes may read; dec_seg_BxT: g + 1 for the group byte t reads, 0 for none.
  """
  b, p = lay.patch_seg_BxP.shape
  t = segment_ids_BxT.shape[1]
  g = -(-p // k)
  pad = ((0, 0), (0, g * k - p))
  used_BxGxK = jnp.pad(lay.patch_seg_BxP > 0, pad).reshape(b, g, k)
  doc_BxGxK = jnp.pad(lay.doc_BxP, pad).reshape(b, g, k)
  whole_BxG = jnp.all(used_BxGxK, -1) & jnp.all(doc_BxGxK == doc_BxGxK[..., :1], -1)
  doc_BxG = doc_BxGxK[..., 0]
  # A plain BLT byte reads patch j = dec_seg - 1; here the last group ending by slot j.
  j = lay.dec_seg_BxT - 1
  grp = jnp.where(j >= 0, (j + 1) // k - 1, -1)
  rows = jnp.arange(b)[:, None]
  safe = jnp.clip(grp, 0, g - 1)
  reads = (grp >= 0) & whole_BxG[rows, safe] & (doc_BxG[rows, safe] == segment_ids_BxT)
  idx = jnp.arange(g, dtype=jnp.int32)
  return dict(
    whole_BxG=whole_BxG,
    segment_ids_BxG=jnp.where(whole_BxG, doc_BxG, t + 1 + idx),
    patch_seg_BxG=jnp.where(whole_BxG, idx + 1, 0),
    dec_seg_BxT=jnp.where(reads, grp + 1, 0),
  )


def blt_latent_patch_loss(model, batch: dict[str, jax.Array], k: int) -> dict[str, jax.Array]:
  """Byte cross-entropy sums of a BLT whose latent reads groups of `k` patches."""
  seg, pos = batch["segment_ids"], batch["positions"]
  rows = dict(segment_ids_BxT=seg, positions_BxT=pos)
  lay = model.layout(batch["patch_starts"], seg)
  x, h_BxPxD = model.encode(model.embed(batch["inputs"], batch.get("hash_ids")), lay, **rows)
  grp = blt_group_layout(lay, seg, k)
  b, p, d = h_BxPxD.shape
  g = grp["whole_BxG"].shape[1]
  h_BxGxD = jnp.pad(h_BxPxD, ((0, 0), (0, g * k - p), (0, 0))).reshape(b, g, k, d).mean(2)
  latent_BxGxD = model.latent_states(h_BxGxD, grp["segment_ids_BxG"])
  dec_lay = lay.replace(dec_seg_BxT=grp["dec_seg_BxT"], patch_seg_BxP=grp["patch_seg_BxG"])
  logits = model.decode(x, latent_BxGxD, dec_lay, **rows)
  return token_ce_sums(logits, batch["targets"])


def make_phases(task, config) -> list[Phase]:
  """[patch phase over the first λ of train.steps, token phase over the rest]."""
  validate(config)
  pl, steps = config.train.patch_level, config.train.steps
  k = pl.K
  patch_steps = int(round(pl.fraction * steps))
  if patch_steps >= steps:
    raise ValueError(
      f"config.train.patch_level.fraction={pl.fraction}: leaves no token-level step of "
      f"train.steps={steps}; the model must finish on tokens"
    )
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  if pl.get("blt_latent", False):
    patch = _blt_patch_phase(task, config, model, k)
  elif isinstance(model, Transformer):
    patch = Phase(
      name="patch",
      steps=0,
      loss_fn=lambda m, b: patch_loss(m, b, k),
      flops=task.flops.scaled(1.0 / k),  # one position per K tokens, same row length
      transform=lambda b: long_rows(b, k),
      cost=1.0 / k,
    )
  else:
    hint = " (for a BLT's latent: train.patch_level.blt_latent=True)" if "blt" in task.name else ""
    raise ValueError(
      f"config.train.patch_level: needs a jaxtok Transformer LM (token embeddings in, logits "
      f"out); config.model.name={config.model.name!r} builds a {type(model).__name__}{hint}"
    )
  patch.steps = patch_steps
  return [patch, Phase("train", steps - patch_steps, task.loss_fn, task.flops)]


def _blt_patch_phase(task, config, model, k: int) -> Phase:
  if not isinstance(model, BLT):
    raise ValueError(f"config.train.patch_level.blt_latent=True: the model is a {type(model)}")
  # Per-latent work (the latent itself, the decoder's reading of it) runs once per group of
  # K patches, as if patches were K times longer; the encoder and to_global still run per patch.
  cfg, seq_len = workdir_lib.model_config(config), config.data.seq_len
  bpp = config.patching.bytes_per_patch
  plain, grouped = blt_flops(cfg, seq_len, bpp).parts, blt_flops(cfg, seq_len, bpp * k).parts
  per_patch = lambda n: n.startswith("encoder/") or n == "global/to_global"
  flops = Flops({n: (plain if per_patch(n) else grouped)[n] for n in plain})
  return Phase(
    name="patch",
    steps=0,
    loss_fn=lambda m, b: blt_latent_patch_loss(m, b, k),
    flops=flops,
    cost=flops.forward / task.flops.forward,
  )
