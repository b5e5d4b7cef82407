import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.models.transformer import Transformer, TransformerConfig


def make(**kw):
  cfg = TransformerConfig(
    **{**dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=64), **kw}
  )
  return Transformer(cfg, rngs=nnx.Rngs(0))


def tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(4, 260, shape), jnp.int32)


def test_causality():
  model = make()
  x = tokens((1, 24))
  base = model(x)
  for t in (0, 7, 23):
    y = model(x.at[0, t].set((x[0, t] + 1 - 4) % 256 + 4))
    np.testing.assert_array_equal(np.asarray(y[0, :t]), np.asarray(base[0, :t]))
    assert not np.allclose(np.asarray(y[0, t]), np.asarray(base[0, t]))


def test_documents_do_not_see_each_other():
  model = make()
  x = tokens((1, 20))
  seg = jnp.asarray([[1] * 8 + [2] * 12])
  pos = jnp.asarray([list(range(8)) + list(range(12))])
  base = model(x, segment_ids=seg, positions=pos)
  # Rewriting all of document 1 changes nothing in document 2 ...
  y = model(x.at[0, :8].set(tokens((8,), 1)), segment_ids=seg, positions=pos)
  np.testing.assert_allclose(np.asarray(y[0, 8:]), np.asarray(base[0, 8:]), atol=1e-6)
  # ... and document 2 alone, at positions 0.., gives the same logits.
  alone = model(x[:, 8:])
  np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(base[0, 8:]), atol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_sliding_window(n_layers):
  w = 4
  model = make(sliding_window=w, n_layers=n_layers)
  x = tokens((1, 20))
  base = model(x)
  reach = n_layers * (w - 1)  # receptive field grows by w-1 per layer
  t = 19
  far = model(x.at[0, t - reach - 1].set(x[0, t - reach - 1] % 250 + 5))
  np.testing.assert_allclose(np.asarray(far[0, t]), np.asarray(base[0, t]), atol=1e-6)
  near = model(x.at[0, t - reach].set(x[0, t - reach] % 250 + 5))
  assert not np.allclose(np.asarray(near[0, t]), np.asarray(base[0, t]), atol=1e-6)


@pytest.mark.parametrize("window", [None, 5])
def test_kv_cache_decode_matches_full_forward(window):
  model = make(sliding_window=window)
  x = tokens((2, 16))
  full = model(x)
  cache = model.init_cache(2, 16)
  logits, cache = model.decode(x[:, :6], cache)
  outs = [logits]
  for i in range(6, 16):
    logits, cache = model.decode(x[:, i : i + 1], cache)
    outs.append(logits)
  np.testing.assert_allclose(np.asarray(jnp.concatenate(outs, 1)), np.asarray(full), atol=1e-5)
  assert int(cache.end) == 16


def test_embeddings_input_and_tied_head():
  model = make(tie_embeddings=True)
  x = tokens((1, 6))
  np.testing.assert_allclose(
    np.asarray(model(embeddings=model.embed(x))), np.asarray(model(x)), atol=1e-6
  )
  assert not hasattr(model, "head")
  with pytest.raises(ValueError, match="exactly one"):
    model()


def test_bf16_compute_is_close_to_fp32():
  x = tokens((1, 12))
  f32 = make()(x)
  bf16 = make(dtype="bfloat16")(x)
  assert bf16.dtype == jnp.float32  # logits come back in float32 for the loss
  np.testing.assert_allclose(np.asarray(bf16), np.asarray(f32), atol=0.1)


@pytest.mark.parametrize(
  "field,value,msg",
  [
    ("n_heads", 3, "n_heads"),
    ("n_kv_heads", 3, "n_kv_heads"),
    ("dtype", "fp8", "dtype"),
    ("attention_impl", "cuda", "attention_impl"),
  ],
)
def test_config_errors_name_the_field(field, value, msg):
  with pytest.raises(ValueError, match=f"config.model.{msg}"):
    TransformerConfig.from_dict({"d_model": 32, "n_heads": 4, field: value})
  with pytest.raises(ValueError, match="unknown"):
    TransformerConfig.from_dict({"d_modle": 32})
