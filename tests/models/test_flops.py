import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxtok.models.flops import Flops, transformer_config_flops, visible_keys
from jaxtok.models.transformer import Transformer, TransformerConfig


def test_visible_keys_by_hand():
  assert visible_keys(4) == pytest.approx((1 + 2 + 3 + 4) / 4)
  assert visible_keys(5, window=2) == pytest.approx((1 + 2 + 2 + 2 + 2) / 5)
  assert visible_keys(3, window=10) == visible_keys(3)


def test_matmul_flops_agree_with_xla_cost_analysis():
  """Our count of the weight matmuls equals what XLA counts for the dense layers."""
  # Unrolled layers: XLA's cost analysis counts the body of a scan's while loop once.
  cfg = TransformerConfig(
    d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=96, vocab_size=100, scan_layers=False
  )
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  t = 1  # one token: attention scores are a negligible 1x1 product
  ours = transformer_config_flops(cfg, t)
  weights = ours.forward - ours.parts["attn_scores"]
  graphdef, params = nnx.split(model)
  f = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
  cost = f.lower(params, jnp.zeros((1, t), jnp.int32)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  # XLA also counts elementwise work (norms, rope, silu, softmax): a few % on top.
  assert weights <= cost["flops"] <= 1.15 * weights


def test_flops_arithmetic():
  a = Flops({"x": 1.0, "y": 2.0})
  b = Flops({"y": 1.0, "z": 4.0})
  assert (a + b).parts == {"x": 1.0, "y": 3.0, "z": 4.0}
  assert a.train == 9.0 and a.inference == 3.0
  assert a.scaled(0.5).forward == 1.5
  assert a.prefixed("enc/").parts == {"enc/x": 1.0, "enc/y": 2.0}
