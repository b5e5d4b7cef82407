import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtok.models.losses import LN2, lm_loss, token_ce_sums
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.train.optimizer import learning_rate_schedule, make_optimizer
from jaxtok.train.steps import TrainState, make_eval_step, make_train_step


def setup(seed=0):
  model = Transformer(
    TransformerConfig(d_model=32, n_layers=1, n_heads=2, mlp_dim=64), rngs=nnx.Rngs(seed)
  )
  graphdef, params = nnx.split(model, nnx.Param)
  tx, schedule = make_optimizer(lr=1e-2, warmup_steps=2, total_steps=10)
  return graphdef, TrainState(jnp.zeros((), jnp.int32), params, tx.init(params)), tx, schedule


def batch(b=4, t=16, seed=0):
  rng = np.random.default_rng(seed)
  targets = rng.integers(4, 260, (b, t)).astype(np.int32)
  targets[0, -3:] = -1  # padding
  targets[1, 5] = 2  # EOS: a token that is not a byte
  return {
    "inputs": jnp.asarray(rng.integers(4, 260, (b, t)), jnp.int32),
    "targets": jnp.asarray(targets),
    "segment_ids": jnp.ones((b, t), jnp.int32),
    "positions": jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)),
  }


def test_ce_sums_match_hand_computation():
  logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25, 1e-9, 1e-9], [0.1, 0.1, 0.1, 0.1, 0.6]]]))
  targets = jnp.array([[0, 4]])
  sums = token_ce_sums(logits, targets)
  # target 0 is a special id (not a byte), target 4 is byte 0x00.
  assert float(sums["loss_sum"]) == pytest.approx(-np.log(0.5) - np.log(0.6), rel=1e-4)
  assert float(sums["tokens"]) == 2 and float(sums["bytes"]) == 1
  assert float(sums["bpb_nats"]) == pytest.approx(-np.log(0.6), rel=1e-4)  # the byte only


def test_schedule_warmup_then_cosine():
  s = learning_rate_schedule(1.0, 10, 100, final_lr_fraction=0.1)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0)
  assert float(s(100)) == pytest.approx(0.1)
  assert float(s(55)) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-3)


def test_gradient_accumulation_is_exact():
  graphdef, state, tx, schedule = setup()
  b = batch()
  one = make_train_step(graphdef, tx, schedule, lm_loss, grad_accum=1)
  four = make_train_step(graphdef, tx, schedule, lm_loss, grad_accum=4)
  s1, m1 = one(jax.tree.map(jnp.copy, state), b)  # the step donates its input state
  s4, m4 = four(state, b)
  assert float(m1["loss"]) == pytest.approx(float(m4["loss"]), rel=1e-6)
  for a, c in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-6)


def test_train_step_lowers_loss_and_reports_bpb():
  graphdef, state, tx, schedule = setup()
  step = make_train_step(graphdef, tx, schedule, lm_loss)
  b = batch()
  first = None
  for _ in range(10):
    state, m = step(state, b)
    first = first if first is not None else float(m["loss"])
  assert float(m["loss"]) < first
  assert int(state.step) == 10
  assert float(m["bpb"]) == pytest.approx(float(m["bpb_nats"]) / LN2 / float(m["bytes"]), rel=1e-5)
  assert float(m["bpb_nats"]) < float(m["loss_sum"])  # the EOS target is trained, not in BPB
  sums = make_eval_step(graphdef, lm_loss)(state.params, b)
  assert float(sums["tokens"]) == 4 * 16 - 3
  assert float(sums["bytes"]) == 4 * 16 - 3 - 1
