"""Patch-level objective: K = 1 is the next-token loss; K > 1 matches a slow explicit loop."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxtok.data import codec
from jaxtok.data.packing import PackedBatches
from jaxtok.models.losses import lm_loss
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.train.patch_level import long_rows, patch_loss

PAD = codec.PAD_ID


def make_docs(n=12, seed=0, tokens=None):
  """Documents of 0 to 39 bytes (many boundaries per row, some shorter than a patch):
  `n` of them, or as many as fit in `tokens` stream tokens."""
  rng = np.random.default_rng(seed)
  docs, total = [], 0
  while (len(docs) < n) if tokens is None else True:
    doc = rng.integers(0, 256, rng.integers(0, 40), dtype=np.uint8).tobytes()
    if tokens is not None and total + len(doc) + 2 > tokens:
      return docs
    docs.append(doc)
    total += len(doc) + 2
  return docs


def jitted(fn, model):
  """fn(model, *args) as a jitted function of the args (eager NNX is slow)."""
  graphdef, state = nnx.split(model)
  return functools.partial(jax.jit(lambda s, *a: fn(nnx.merge(graphdef, s), *a)), state)


@pytest.fixture(scope="module")
def model():
  cfg = TransformerConfig(d_model=32, n_layers=2, n_heads=2, mlp_dim=64)
  return Transformer(cfg, rngs=nnx.Rngs(0))


def stream_rows(docs, rows, n):
  """Long rows built by hand from the document stream (independent of PackedBatches).

  Returns inputs/targets [rows, n] and, per row, the stream index of every slot
  and the document of every stream index.
  """
  encoded = [codec.encode(d) for d in docs]
  stream = np.concatenate(encoded)
  doc = np.repeat(np.arange(len(encoded)), [e.size for e in encoded])
  inputs = np.full((rows, n), PAD, np.int32)
  targets = np.full((rows, n), PAD, np.int32)
  for r in range(rows):
    for i in range(n):
      j = r * n + i
      if j < stream.size:
        inputs[r, i] = stream[j]
        if j + 1 < stream.size and doc[j + 1] == doc[j]:
          targets[r, i] = stream[j + 1]
  return inputs, targets, stream, doc


def reference_loss(model, docs, rows, n, k, token_bytes=None):
  """The objective written out patch by patch, running each document piece on its own."""
  _, _, stream, doc = stream_rows(docs, rows, n)
  table = np.asarray(model.embed.embedding[...])
  pieces = []  # (row, document, [(patch index, mean embedding)]) of whole patches
  for r in range(rows):
    for p in range(n // k):
      js = [r * n + p * k + i for i in range(k)]
      if js[-1] >= stream.size or len({doc[j] for j in js}) != 1:
        continue  # straddles a document boundary or holds padding: masked
      if not pieces or pieces[-1][:2] != (r, doc[js[0]]):
        pieces.append((r, doc[js[0]], []))
      pieces[-1][2].append((p, table[stream[js]].mean(0)))
  # Each piece runs on its own from position 0 (right-padded: causal, so padding is unseen).
  emb = np.zeros((len(pieces), n // k, table.shape[1]), np.float32)
  for i, (_, _, patches) in enumerate(pieces):
    emb[i, : len(patches)] = [e for _, e in patches]
  forward = jitted(lambda m, x: jax.nn.log_softmax(m(embeddings=x), axis=-1), model)
  logps = np.asarray(forward(jnp.asarray(emb)), np.float64)
  loss_sum, tokens, nbytes = 0.0, 0, 0
  for (r, d, patches), logp in zip(pieces, logps):
    for q, (p, _) in enumerate(patches):
      for i in range(k):
        t = (p + 1) * k + i  # slot of the target in the row
        j = r * n + t
        # Only the first token after a row is known to the row (its last target).
        if t > n or j >= stream.size or doc[j] != d:
          continue
        loss_sum -= logp[q, stream[j]]
        tokens += 1
        if token_bytes is None:
          nbytes += int(stream[j] >= codec.OFFSET)
        else:
          nbytes += int(token_bytes[stream[j]])
  return loss_sum, tokens, nbytes


def test_long_rows_of_packed_batches_are_stream_windows():
  docs = make_docs(30, seed=1)
  b, t, k = 8, 12, 4
  batch = next(PackedBatches(docs, batch_size=b, seq_len=t, seed=0, shuffle=False))
  got = long_rows(batch, k)
  inputs, targets, _, _ = stream_rows(docs, b // k, k * t)
  np.testing.assert_array_equal(got["inputs"], inputs)
  np.testing.assert_array_equal(got["targets"], targets)


def test_k1_is_exactly_the_next_token_loss(model):
  docs = make_docs(30, seed=2)
  it = PackedBatches(docs, batch_size=4, seq_len=24, seed=0, repeat=False)
  batches = list(it)
  assert len(batches) > 1 and np.any(batches[-1]["inputs"] == PAD)  # padding is covered
  token_loss = jitted(lm_loss, model)
  k1_loss = jitted(lambda m, b: patch_loss(m, b, 1), model)
  for batch in batches[:2] + batches[-1:]:
    want = token_loss(batch)
    got = k1_loss(long_rows(batch, 1))
    for key in ("loss_sum", "tokens", "bytes"):
      assert float(got[key]) == float(want[key]), key


@pytest.mark.parametrize("k,token_bytes", [(4, False), (3, True)])
def test_patch_loss_matches_slow_loop(model, k, token_bytes):
  rows, n = 3, 16 * k
  docs = make_docs(seed=k, tokens=rows * n - 5)  # the stream ends inside the batch
  inputs, targets, _, _ = stream_rows(docs, rows, n)
  batch = {"inputs": inputs, "targets": targets}
  lengths = None
  if token_bytes:  # token models pass the bytes of each target token
    lengths = np.random.default_rng(0).integers(1, 6, 260)
    batch["target_bytes"] = np.where(targets >= 0, lengths[np.maximum(targets, 0)], 0)
  got = jitted(lambda m, b: patch_loss(m, b, k), model)(batch)
  loss_sum, tokens, nbytes = reference_loss(model, docs, rows, n, k, token_bytes=lengths)
  assert tokens > 20 and float(got["tokens"]) == tokens
  assert float(got["bytes"]) == nbytes
  np.testing.assert_allclose(float(got["loss_sum"]), loss_sum, rtol=2e-5)


def test_gradient_reaches_every_token_of_a_patch(model):
  """The patch embedding is the mean of K token embeddings: each gets 1/K of its gradient."""
  k = 4
  ids = np.arange(8, 8 + 4 * k, dtype=np.int32)[None]  # one document, 4 patches
  targets = np.concatenate([ids[:, 1:], [[PAD]]], 1)
  batch = {"inputs": jnp.asarray(ids), "targets": jnp.asarray(targets)}
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(p):
    return patch_loss(nnx.merge(graphdef, p), batch, k)["loss_sum"]

  g = np.asarray(jax.jit(jax.grad(loss))(params)["embed"]["embedding"][...])
  # Tokens of the last patch are inputs of a patch with no target: no gradient.
  np.testing.assert_array_equal(g[ids[0, 3 * k :]], 0.0)
  assert np.all(np.abs(g[ids[0, : 3 * k]]).sum(-1) > 0)
  # Tokens of one patch share its input vector, so their embedding gradients are equal.
  np.testing.assert_allclose(g[ids[0, 0]], g[ids[0, 1]], rtol=1e-6)


# --- BLT: the latent reads groups of K patches -------------------------------------------------

BLT_SMALL = dict(
  d_local=32,
  d_global=48,
  n_layers_encoder=1,
  n_layers_global=2,
  n_layers_decoder=1,
  n_heads_local=2,
  n_heads_global=4,
  cross_attn_heads=2,
  hash_vocab=97,
  hash_ngram_sizes=(2, 3),
  local_window=16,
)


def blt_batch(docs, rows, t, pcfg, mcfg):
  from jaxtok.train.blt_task import BLTBatches

  packed = PackedBatches(docs, batch_size=rows, seq_len=t, seed=0, shuffle=False)
  return BLTBatches(pcfg, mcfg)(next(packed))


@pytest.fixture(scope="module")
def blt_setup():
  from jaxtok.models.blt import BLT, BLTConfig
  from jaxtok.patching import PatchingConfig

  pcfg = PatchingConfig(scheme="space", max_patch_length=6)
  cfg = BLTConfig(**BLT_SMALL, max_patches=24, lookahead=pcfg.lookahead)
  docs = [b"ab cd ef. gh ij kl mn", b"op qr st", b"uv wx yz 01 23 45 67", b"89"] * 3
  batch = blt_batch(docs, 2, 48, pcfg, cfg)
  return BLT(cfg, rngs=nnx.Rngs(0)), batch


def test_blt_latent_k1_is_exactly_the_blt_loss(blt_setup):
  from jaxtok.models.blt import blt_loss
  from jaxtok.train.patch_level import blt_latent_patch_loss

  model, batch = blt_setup
  want = jitted(blt_loss, model)(batch)
  got = jitted(lambda m, b: blt_latent_patch_loss(m, b, 1), model)(batch)
  for key in ("loss_sum", "tokens", "bytes"):
    assert float(got[key]) == float(want[key]), key


def test_blt_latent_groups_are_causal_and_stay_in_documents(blt_setup):
  """Which group each byte reads, checked patch by patch against the plain BLT layout."""
  from jaxtok import patching
  from jaxtok.train.patch_level import blt_group_layout

  model, batch = blt_setup
  k = 3
  seg = batch["segment_ids"]
  lay = patching.layout(batch["patch_starts"], seg, model.cfg.max_patches, lookahead=True)
  grp = {n: np.asarray(v) for n, v in blt_group_layout(lay, jnp.asarray(seg), k).items()}
  ids, doc, dec = (np.asarray(a) for a in (lay.patch_ids_BxT, lay.doc_BxP, lay.dec_seg_BxT))
  reads = 0
  for r in range(seg.shape[0]):
    for t in range(seg.shape[1]):
      g = grp["dec_seg_BxT"][r, t] - 1
      if g < 0:
        continue
      reads += 1
      slots = range(g * k, g * k + k)
      # Every patch of the group ends at or before byte t, and lies in byte t's document.
      assert max(np.flatnonzero(ids[r] == s).max() for s in slots) <= t
      assert all(doc[r, s] == seg[r, t] for s in slots)
      # It is the last such group: the plain BLT reads patch j < (g + 2) k - 1.
      assert g * k + k - 1 <= dec[r, t] - 1 < (g + 2) * k - 1
  assert reads > 10
  # Groups that straddle two documents are never read.
  straddling = [
    (r, g)
    for r in range(seg.shape[0])
    for g in range(grp["whole_BxG"].shape[1])
    if len({doc[r, s] for s in range(g * k, min(g * k + k, doc.shape[1]))}) > 1
  ]
  assert straddling and all(not grp["whole_BxG"][r, g] for r, g in straddling)


def test_blt_latent_patch_loss_trains(blt_setup):
  from jaxtok.train.patch_level import blt_latent_patch_loss

  model, batch = blt_setup
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(p):
    sums = blt_latent_patch_loss(nnx.merge(graphdef, p), batch, 4)
    return sums["loss_sum"] / sums["tokens"]

  grads = jax.jit(jax.grad(loss))(params)
  norms = {k: float(optax.tree.norm(v)) for k, v in grads.items()}
  # Every part learns in the patch phase: encoder, latent and decoder all get gradients.
  assert norms["encoder"] > 0 and norms["latent"] > 0 and norms["decoder"] > 0
