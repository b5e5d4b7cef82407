"""Flash attention kernel (interpret mode on CPU) against the spine's XLA reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok.nn.attention import Mask, attention
from pallas_kernels import flash_attention as fa


def documents(rng, b, t, pad_tail=True):
  """Packed documents: sorted segment ids 1.., zeros (padding) at the end."""
  seg = np.sort(rng.integers(1, 6, size=(b, t)), axis=1)
  if pad_tail:
    seg[:, t - rng.integers(0, t // 3) :] = 0
  return seg.astype(np.int32)


def patch_layout(rng, b, n_bytes, n_patches, queries_per_patch):
  """BLT cross-attention ids: patches of random length over the bytes, unused
  patch slots (0) at the end; every patch has `queries_per_patch` queries."""
  kv_seg = np.zeros((b, n_bytes), np.int32)
  q_seg = np.zeros((b, n_patches * queries_per_patch), np.int32)
  for i in range(b):
    lengths = rng.integers(1, 9, size=n_patches)
    ids = np.repeat(np.arange(1, n_patches + 1), lengths)[:n_bytes]
    kv_seg[i, : len(ids)] = ids
    q_seg[i] = np.repeat(
      np.arange(1, n_patches + 1) * (np.arange(1, n_patches + 1) <= ids[-1]), queries_per_patch
    )
  return q_seg, kv_seg


@functools.partial(jax.jit, static_argnames=("block_q", "block_k"))
def _both(q, k, v, mask, ct, block_q, block_k):
  """Outputs and vjp(ct) of impl="xla" and of the kernel (one compile per static config)."""

  def run(f):
    out, vjp = jax.vjp(f, q, k, v)
    return out, vjp(ct)

  kernel = lambda q, k, v: fa.attention(q, k, v, mask, block_q=block_q, block_k=block_k)
  return run(lambda q, k, v: attention(q, k, v, mask, impl="xla")), run(kernel)


def compare(q, k, v, mask, block_q, block_k, *, rtol=2e-5, atol=2e-5):
  """Values and (q, k, v) gradients of the kernel against impl="xla"."""
  ct = jnp.asarray(np.random.default_rng(0).normal(size=q.shape), q.dtype)
  (want, want_grads), (got, got_grads) = _both(q, k, v, mask, ct, block_q, block_k)
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), rtol, atol)
  for name, g, w in zip("qkv", got_grads, want_grads):
    np.testing.assert_allclose(
      np.asarray(g, np.float32), np.asarray(w, np.float32), rtol, atol, err_msg=f"d{name}"
    )


def qkv(rng, b, t, s, n, kv, h, dtype=jnp.float32):
  mk = lambda *shape: jnp.asarray(rng.normal(size=shape), dtype)
  return mk(b, t, n, h), mk(b, s, kv, h), mk(b, s, kv, h)


@pytest.mark.parametrize("causal,window", [(True, 9), (False, None)])
def test_documents_causal_window_gqa_ragged(causal, window):
  """Self-attention over packed documents; T=45 leaves ragged 16-row blocks."""
  rng = np.random.default_rng(1)
  q, k, v = qkv(rng, 2, 45, 45, 4, 2, 8)
  for _ in range(3):  # new layouts reuse the compiled kernels
    seg = jnp.asarray(documents(rng, 2, 45))
    mask = Mask(q_segment_ids=seg, kv_segment_ids=seg, causal=causal, window=window)
    compare(q, k, v, mask, 16, 16)


def test_blt_patch_cross_attention():
  """Encoder: patch queries (2 per patch) over the bytes of their own patch and
  the one before (segment_window=2). Decoder: bytes over their patch's latents."""
  rng = np.random.default_rng(2)
  b, n_bytes, n_patches, k_per = 2, 70, 14, 2
  q, k, v = qkv(rng, b, n_patches * k_per, n_bytes, 2, 2, 8)
  dq, dk, dv = qkv(rng, b, n_bytes, n_patches * k_per, 2, 1, 8)
  for _ in range(3):
    q_seg, kv_seg = map(jnp.asarray, patch_layout(rng, b, n_bytes, n_patches, k_per))
    mask = Mask(q_segment_ids=q_seg, kv_segment_ids=kv_seg, causal=False, segment_window=2)
    compare(q, k, v, mask, 8, 16)
    compare(dq, dk, dv, Mask(q_segment_ids=kv_seg, kv_segment_ids=q_seg, causal=False), 16, 8)


def test_kv_cache_indices():
  """Decoding 3 queries at absolute positions into a 40-slot cache, partly filled."""
  rng = np.random.default_rng(3)
  q, k, v = qkv(rng, 2, 3, 40, 4, 1, 8)
  for end in (5, 23, 37):
    kidx = np.broadcast_to(np.arange(40, dtype=np.int32), (2, 40))
    mask = Mask(
      kv_segment_ids=jnp.asarray((kidx < end).astype(np.int32)),
      q_idx=jnp.asarray(np.broadcast_to(np.arange(end - 3, end, dtype=np.int32), (2, 3))),
      kv_idx=jnp.asarray(kidx),
      causal=True,
      window=16,
    )
    compare(q, k, v, mask, 8, 8)


def test_tpu_legal_blocks_bf16():
  """(8, 128) blocks over ragged T=200, S=300 in bfloat16 (interpret mode does not
  enforce TPU tiling; these shapes also pass the Mosaic lowering test below)."""
  rng = np.random.default_rng(4)
  q, k, v = qkv(rng, 1, 200, 300, 2, 2, 16, jnp.bfloat16)
  seg = jnp.asarray(documents(rng, 1, 300))
  # Queries are the last 200 positions of the 300 keys (a chunk of a longer row).
  q_idx = jnp.arange(100, 300, dtype=jnp.int32)[None]
  mask = Mask(q_segment_ids=seg[:, 100:], kv_segment_ids=seg, q_idx=q_idx, window=100)
  compare(q, k, v, mask, 8, 128, rtol=3e-2, atol=3e-2)


def test_fully_masked_rows_are_zero_without_nan():
  """Padding queries, and queries of a segment that has no keys, see nothing."""
  rng = np.random.default_rng(5)
  q, k, v = qkv(rng, 1, 20, 20, 2, 2, 8)
  q_seg = jnp.asarray([[0] * 4 + [1] * 6 + [9] * 2 + [2] * 6 + [0] * 2], jnp.int32)
  kv_seg = jnp.asarray([[1] * 8 + [2] * 10 + [0] * 2], jnp.int32)
  mask = Mask(q_segment_ids=q_seg, kv_segment_ids=kv_seg, causal=False)
  dead = np.isin(np.asarray(q_seg[0]), [0, 9])

  @jax.jit
  def run(q, k, v):
    f = lambda q, k, v: fa.attention(q, k, v, mask, block_q=8, block_k=8)
    out, vjp = jax.vjp(f, q, k, v)
    return out, vjp(jnp.ones_like(out))

  out, grads = run(q, k, v)
  assert np.all(np.asarray(out)[0, dead] == 0) and np.all(np.asarray(out)[0, ~dead] != 0)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  assert np.all(np.asarray(grads[0])[0, dead] == 0)
  np.testing.assert_allclose(out, attention(q, k, v, mask), atol=2e-5)


def visible_block_pairs(mask: Mask, b, t, s, bq, bk):
  """Reference count: (query block, key block) pairs holding a visible pair."""
  dense = np.asarray(mask.dense(b, t, s))
  dense = np.pad(dense, ((0, 0), (0, -t % bq), (0, -s % bk)))
  blocks = dense.reshape(b, dense.shape[1] // bq, bq, dense.shape[2] // bk, bk)
  return blocks.any(axis=(2, 4)).sum(axis=-1)  # B x nQ


def test_visits_exactly_the_blocks_the_mask_allows():
  """The kernel's own visit counter equals the number of block pairs with a
  visible entry for sorted layouts, and never undercounts for shuffled ones."""
  rng = np.random.default_rng(6)
  b, t, n = 2, 128, 2
  q, k, v = qkv(rng, b, t, t, n, n, 8)
  run = jax.jit(
    lambda q, k, v, mask: fa.attention_with_stats(q, k, v, mask, block_q=16, block_k=16)
  )
  full = Mask(causal=False)
  assert np.all(np.asarray(run(q, k, v, full)[1]) == 8)
  for window in (None, 20):
    seg = jnp.asarray(documents(rng, b, t))
    mask = Mask(q_segment_ids=seg, kv_segment_ids=seg, window=window)
    visits = np.asarray(run(q, k, v, mask)[1])
    assert np.array_equal(
      visits, np.repeat(visible_block_pairs(mask, b, t, t, 16, 16)[:, None], n, 1)
    )
  shuffled = jnp.asarray(rng.permutation(np.asarray(seg), axis=1))
  mask = Mask(q_segment_ids=shuffled, kv_segment_ids=shuffled, window=20)
  out, visits = run(q, k, v, mask)
  assert np.all(np.asarray(visits) >= visible_block_pairs(mask, b, t, t, 16, 16)[:, None])
  np.testing.assert_allclose(out, attention(q, k, v, mask), atol=2e-5)


def test_work_scales_with_unmasked_area():
  """Sliding windows over 1024 keys: visits grow with the window, a fraction of causal's."""
  rng = np.random.default_rng(7)
  q, k, v = qkv(rng, 1, 1024, 1024, 1, 1, 8)
  run = jax.jit(
    lambda q, k, v, mask: fa.attention_with_stats(q, k, v, mask, block_q=64, block_k=64)[1].sum()
  )
  visits = {w: int(run(q, k, v, Mask(window=w))) for w in (64, 256, None)}
  assert visits[None] == 16 * 17 // 2  # the causal triangle of 16 x 16 blocks
  assert visits[64] == 16 + 15 and visits[256] == 16 * 5 - 4 - 3 - 2 - 1


@pytest.mark.parametrize(
  "platform,backend,target", [("tpu", "tpu", "tpu_custom_call"), ("cuda", "gpu", "__gpu")]
)
def test_lowers_for_accelerators(platform, backend, target):
  """Forward and backward lower to Mosaic TPU / Triton from this CPU machine
  (Pallas checks block tiling here; the device compilers themselves are not run)."""
  q = jnp.zeros((2, 300, 4, 128), jnp.bfloat16)
  k = jnp.zeros((2, 300, 2, 128), jnp.bfloat16)
  seg = jnp.ones((2, 300), jnp.int32)
  mask = Mask(q_segment_ids=seg, kv_segment_ids=seg, window=128)
  loss = lambda q, k, v: (
    fa.attention(q, k, v, mask, block_q=64, backend=backend).astype(jnp.float32).sum()
  )
  text = (
    jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    .trace(q, k, k)
    .lower(lowering_platforms=(platform,))
    .as_text()
  )
  assert text.count(target) >= 3  # forward, dq, dk/dv


def test_bad_inputs():
  q = jnp.zeros((1, 16, 2, 8))
  with pytest.raises(ValueError, match="q_segment_ids"):
    fa.attention(q, q, q, Mask(q_segment_ids=jnp.ones((1, 15), jnp.int32)))
  with pytest.raises(ValueError, match="kv heads"):
    fa.attention(q, q[:, :, :1].repeat(3, 2), q[:, :, :1].repeat(3, 2), Mask())
  long = jnp.zeros((1, 512, 2, 8))
  with pytest.raises(ValueError, match="TPU blocks"):
    fa.attention(long, long, long, Mask(), block_k=64, backend="tpu")
  with pytest.raises(ValueError, match="backend"):
    fa.attention(q, q, q, Mask(), backend="metal")
