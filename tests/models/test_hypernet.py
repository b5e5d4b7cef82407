"""The ZeTT hypernetwork: FVT at init (residual form), identity warm-up, config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.models.hypernet import Hypernet, HypernetConfig
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.train import zett
from jaxtok.train.optimizer import make_optimizer
from jaxtok.train.steps import TrainState, make_train_step

V, D = 300, 32


def _tables(untied=True):
  e_in = np.asarray(jax.random.normal(jax.random.key(0), (V, D))) * 0.3 + 0.05
  e_out = np.asarray(jax.random.normal(jax.random.key(1), (V, D))) if untied else None
  return e_in, e_out


def _ids(n=64, length=5, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, V, (n, length)).astype(np.int32)
  lens = rng.integers(0, length + 1, n)
  ids[np.arange(length)[None, :] >= lens[:, None]] = -1
  return ids


def _jitted(h):
  graphdef, state = nnx.split(h)
  return jax.jit(lambda ids, *tables: nnx.merge(graphdef, state)(ids, *tables))


def test_residual_form_is_fvt_at_init():
  e_in, e_out = _tables()
  h = Hypernet(HypernetConfig(max_len=5, n_heads=4), emb_in=e_in, emb_out=e_out, rngs=nnx.Rngs(0))
  ids = _ids()
  p_in, p_out = _jitted(h)(jnp.asarray(ids), e_in, e_out)
  for row, a, b in zip(ids, np.asarray(p_in), np.asarray(p_out)):
    valid = row[row >= 0]
    want_in = e_in[valid].mean(0) if len(valid) else e_in.mean(0)
    want_out = e_out[valid].mean(0) if len(valid) else e_out.mean(0)
    np.testing.assert_allclose(a, want_in, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, want_out, rtol=1e-5, atol=1e-6)


def test_prediction_depends_only_on_its_own_row():
  e_in, _ = _tables(untied=False)
  h = Hypernet(HypernetConfig(max_len=5, residual=False), emb_in=e_in, rngs=nnx.Rngs(0))
  predict = _jitted(h)
  ids = _ids(8)
  full, none = predict(jnp.asarray(ids), e_in)
  assert none is None
  for i in range(len(ids)):  # the same row among other rows: same prediction
    other = _ids(8, seed=i + 1)
    other[i] = ids[i]
    mixed, _ = predict(jnp.asarray(other), e_in)
    np.testing.assert_allclose(mixed[i], full[i], rtol=1e-4, atol=1e-5)


def test_fitted_scaling_matches_the_base_table_statistics():
  e_in, _ = _tables(untied=False)
  h = Hypernet(HypernetConfig(max_len=5, residual=False), emb_in=e_in, rngs=nnx.Rngs(0))
  pred, _ = _jitted(h)(jnp.asarray(_ids(2000)), e_in)
  pred = np.asarray(pred)
  # Per dimension: mean near the table's mean, spread of the same order as the table's.
  assert np.abs(pred.mean(0) - e_in.mean(0)).mean() < 0.5 * e_in.std()
  ratio = pred.std(0).mean() / e_in.std(0).mean()
  assert 0.3 < ratio < 3.0


def test_identity_stage_approaches_the_original_embeddings():
  base_cfg = TransformerConfig(vocab_size=V, d_model=D, n_layers=1, n_heads=2, mlp_dim=64)
  base = Transformer(base_cfg, rngs=nnx.Rngs(3))
  emb_in, emb_out = base.embedding_tables()
  hcfg = HypernetConfig(max_len=4, n_layers=2, n_heads=2, residual=False, mlp_dim=64)
  model = zett.ZettModel(Hypernet(hcfg, emb_in=emb_in, emb_out=emb_out, rngs=nnx.Rngs(0)), base)
  graphdef, params, frozen = nnx.split(model, zett.HYPERNET, ...)
  tx, schedule = make_optimizer(lr=5e-3, warmup_steps=10, total_steps=150, weight_decay=0.0)
  state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  step = make_train_step(graphdef, tx, schedule, zett.identity_loss)

  def batch(ids):
    decomp = np.full((len(ids), 4), -1, np.int32)
    decomp[:, 0] = ids
    return {"decomp": jnp.asarray(decomp), "base_ids": jnp.asarray(ids)}

  everything = batch(np.arange(V, dtype=np.int32))
  loss_all = jax.jit(lambda p: zett.identity_loss(nnx.merge(graphdef, p, frozen), everything))
  before = float(loss_all(params)["loss_sum"]) / V
  hyper = lambda p: _jitted(nnx.merge(graphdef, p, frozen).hypernet)
  pred0, _ = hyper(params)(everything["decomp"], emb_in, emb_out)  # before steps donate params
  rng = np.random.default_rng(0)
  for _ in range(150):
    state, _ = step(state, batch(rng.choice(V, 128, replace=False).astype(np.int32)), frozen)
  after = float(loss_all(state.params)["loss_sum"]) / V
  assert after < before / 4  # relative errors of both tables (see zett._sq_err)
  pred, pred_out = hyper(state.params)(everything["decomp"], emb_in, emb_out)
  err = lambda p, e: float(((np.asarray(p) - np.asarray(e)) ** 2).mean())
  assert err(pred, emb_in) < err(pred0, emb_in) / 5
  nearest = np.argmax(np.asarray(pred) @ np.asarray(emb_in).T / np.linalg.norm(emb_in, axis=1), 1)
  assert (nearest == np.arange(V)).mean() > 0.9


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match="config.model.n_layers"):
    HypernetConfig.from_dict({"n_layers": 0})
  with pytest.raises(ValueError, match="unknown field"):
    HypernetConfig.from_dict({"layers": 3})
  e_in, e_out = _tables()
  h = Hypernet(HypernetConfig(max_len=5), emb_in=e_in, emb_out=e_out, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="emb_out"):
    h(jnp.asarray(_ids()), e_in)
