"""The generation bench measures what it says (tiny shapes, not the bench run)."""

from bench import generation as bench
from jaxtok.models import reference


def test_every_goal_column_is_measured_at_tiny_shapes():
  text = bench.stdlib_text()
  small = dict(d_local=32, d_global=64, n_layers_global=1, n_layers_decoder=1, local_window=16)
  s = bench.random_setup(text, dict(d_model=32, n_layers=1, n_heads=2), **small)
  rows = bench.measure(s, text, [20, 28], [1, 2], new=5, uncached_new=3)  # one length bucket
  assert [(r["context"], r["batch"]) for r in rows] == [(20, 1), (20, 2), (28, 1), (28, 2)]
  for r in rows:
    assert r["cached"] > 0 and r["prefill_s"] > 0 and r["blt_fwd_s"] > 0 and r["em_fwd_s"] > 0
    assert r["vs_batch1"] > 0 and r["cost_vs_shortest"] > 0
    if r["batch"] == 1:
      assert r["uncached"] > 0 and r["same_bytes"] is True  # greedy: the reference's bytes
  assert rows[0]["cost_vs_shortest"] == 1.0 and rows[0]["vs_batch1"] == 1.0
  out = bench.table(rows)
  assert out.count("\n") == len(rows) + 1 and "cached / uncached" in out


def test_the_transformers_arm_generates_the_cached_bytes_on_the_same_weights(tmp_path):
  """--transformers: the exported BLT decoded by transformers' generate, next to the others."""
  text = bench.stdlib_text()
  small = dict(d_local=32, d_global=64, n_layers_global=1, n_layers_decoder=1, local_window=16)
  s = bench.random_setup(
    text, dict(d_model=32, n_layers=1, n_heads=2), **small, **reference.model_settings()
  )
  s = bench.with_transformers(s, str(tmp_path))
  rows = bench.measure(s, text, [20], [1], new=5, uncached_new=3)
  assert rows[0]["transformers"] > 0 and rows[0]["hf_same_bytes"] is True
  assert "cached / transformers" in bench.table(rows)
