"""The reference-compatible switches of the BLT: cross-attention windows, init, FFN rounding.
(The 2x + O residual and the missing latent norm are checked against transformers in
tests/models/hf/test_hf_blt.py.)"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.models import reference, workdir
from jaxtok.models.blt import BLT, BLTConfig

SMALL = dict(
  d_local=32,
  d_global=64,
  n_layers_encoder=1,
  n_layers_global=1,
  n_layers_decoder=1,
  n_heads_local=4,
  cross_attn_heads=4,
  hash_vocab=0,
  max_patches=8,
  lookahead=True,
)
T = 12
STARTS = jnp.asarray([[1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1]], bool)  # patches 0..6
# patch of each byte: [0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5]


def parts(model, ids, seg=None, pos=None):
  seg = jnp.ones((1, T), jnp.int32) if seg is None else seg
  pos = jnp.arange(T)[None] if pos is None else pos
  lay = model.layout(STARTS, seg)
  rows = dict(segment_ids_BxT=seg, positions_BxT=pos)
  x, h = model.encode(model.embed(ids), lay, **rows)
  return x, h, lay, rows


@pytest.mark.parametrize("w", [1, 2, 3])
def test_encoder_window_sees_its_patch_and_the_w_minus_1_before(w):
  # local_window=1: a byte's state depends on that byte only, so any change downstream
  # comes from the cross-attention.
  cfg = BLTConfig(**SMALL, local_window=1, cross_attn_window_encoder=w)
  model = BLT(cfg, rngs=nnx.Rngs(0))
  ids = jnp.asarray(np.random.default_rng(0).integers(4, 260, (1, T)))
  _, h, _, _ = parts(model, ids)
  _, h2, _, _ = parts(model, ids.at[0, 3].set(ids[0, 3] + 1))  # a byte of patch 2
  changed = np.abs(np.asarray(h2 - h)[0]).max(-1) > 1e-6
  # patch 2 pools the byte; patches 3..w+1 see it through the window; none other.
  assert changed[:6].tolist() == [p == 2 or 2 < p < 2 + w for p in range(6)]


@pytest.mark.parametrize("w", [1, 2, 3])
def test_decoder_window_sees_the_latent_it_reads_and_the_w_minus_1_before(w):
  cfg = BLTConfig(**SMALL, local_window=1, cross_attn_window_decoder=w)
  model = BLT(cfg, rngs=nnx.Rngs(0))
  ids = jnp.asarray(np.random.default_rng(0).integers(4, 260, (1, T)))
  x, h, lay, rows = parts(model, ids)
  g = model.latent_states(h, lay.doc_BxP)
  base = model.decode(x, g, lay, **rows)
  out = model.decode(x, g.at[0, 2].add(1.0), lay, **rows)  # the latent of patch 2
  changed = np.abs(np.asarray(out - base)[0]).max(-1) > 1e-6
  dec = np.asarray(lay.dec_seg_BxT)[0] - 1  # the latent byte t reads
  assert changed.tolist() == [2 <= d < 2 + w for d in dec]


def test_windows_never_reach_into_an_earlier_document():
  cfg = BLTConfig(**SMALL, local_window=4, cross_attn_window_encoder=3, cross_attn_window_decoder=3)
  model = BLT(cfg, rngs=nnx.Rngs(0))
  ids = jnp.asarray(np.random.default_rng(0).integers(4, 260, (1, T)))
  seg = jnp.asarray([[1] * 5 + [2] * 7])  # document 2 starts at byte 5, a patch start
  pos = jnp.asarray([list(range(5)) + list(range(7))])
  lay = model.layout(STARTS, seg)

  def logits(ids):
    rows = dict(segment_ids_BxT=seg, positions_BxT=pos)
    x, h = model.encode(model.embed(ids), lay, **rows)
    return np.asarray(model.decode(x, model.latent_states(h, lay.doc_BxP), lay, **rows))[0]

  base = logits(ids)
  other = logits(ids.at[0, :5].set(jnp.asarray([7, 8, 9, 10, 11])))  # change document 1 only
  np.testing.assert_array_equal(other[5:], base[5:])
  assert not np.allclose(other[:5], base[:5])


def test_reference_init_is_truncated_normal_with_fan_in_scale():
  cfg = BLTConfig(**{**SMALL, "hash_vocab": 97}, hash_ngram_sizes=(3,), init="reference")
  model = BLT(cfg, rngs=nnx.Rngs(0))
  trunc = 0.9866  # std of a standard normal truncated at ±3
  n = 0
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param) and path[-1] in ("kernel", "embedding"):
      w = np.asarray(var[...])
      sigma = (w.shape[-2] if path[-1] == "kernel" else w.shape[-1]) ** -0.5
      assert np.abs(w).max() <= 3 * sigma + 1e-6, path
      assert w.std() == pytest.approx(trunc * sigma, rel=0.1), path
      n += 1
  assert n > 15
  default = BLT(BLTConfig(**SMALL), rngs=nnx.Rngs(0))
  assert np.asarray(default.encoder.embed.embedding[...]).std() == pytest.approx(1.0, rel=0.05)


def test_ffn_rounding_multiple():
  cfg = BLTConfig(**SMALL)
  # 8 * 32 / 3 = 85.3 -> 128 (jaxtok's 64) or 256 (the reference)
  assert cfg.local_config(1).hidden_dim == 128
  ref = BLTConfig(**SMALL, ffn_multiple_of=256)
  assert ref.local_config(1).hidden_dim == 256 and ref.global_config().hidden_dim == 256
  assert reference.model_settings()["ffn_multiple_of"] == 256


def test_cached_generation_refuses_windows():
  model = BLT(BLTConfig(**SMALL, cross_attn_window_decoder=2), rngs=nnx.Rngs(0))
  with pytest.raises(NotImplementedError, match="generate_blt_uncached"):
    jax.eval_shape(lambda: model.init_caches(1, 8, 8))


def test_space_workdirs_from_before_the_reference_rule_keep_their_rule(tmp_path):
  old = {"model": {"name": "blt"}, "patching": {"scheme": "space"}, "data": {"seq_len": 64}}
  new = {**old, "patching": {"scheme": "space", "space_rule": "end"}}
  for name, config in (("old", old), ("new", new)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(json.dumps(config))
  assert workdir.load_config(str(tmp_path / "old")).patching.space_rule == "start"
  assert workdir.model_config(workdir.load_config(str(tmp_path / "old"))).lookahead is False
  assert workdir.load_config(str(tmp_path / "new")).patching.space_rule == "end"
