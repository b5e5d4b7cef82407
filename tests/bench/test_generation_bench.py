"""The generation bench measures what it says (tiny shapes, not the bench run)."""

import json
import os
import subprocess
import sys

import pytest

from bench import generation as bench
from bench import profile_generation, profile_step
from jaxtok.models import reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = dict(d_local=32, d_global=64, n_layers_global=1, n_layers_decoder=1, local_window=16)


def test_every_goal_column_is_measured_at_tiny_shapes(tmp_path):
  text = bench.stdlib_text()
  s = bench.random_setup(text, dict(d_model=32, n_layers=1, n_heads=2), **SMALL)
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
  # --json: what bench/device_check.sh collects; its report has one line per row
  bench.write_json(str(tmp_path / "generation.json"), rows, (0.5, 0, 0), (0.7, 0, 0))
  data = json.loads((tmp_path / "generation.json").read_text())
  assert data["load_before"][0] == 0.5 and data["rows"][3]["cached"] == rows[3]["cached"]
  assert "ids" not in data["rows"][0]
  report = subprocess.run(
    [sys.executable, "bench/device_report.py", str(tmp_path)], cwd=ROOT, capture_output=True
  )
  table = (tmp_path / "device_check.md").read_text()
  assert report.returncode == 0, report.stderr
  assert f"| BLT generation, 28 bytes x 2 rows | {rows[3]['cached']:.0f} bytes/s" in table
  assert f"{rows[3]['vs_batch1']:.2f}x batch 1" in table


def test_the_decode_profile_sums_op_time_by_kind(tmp_path):
  """bench/profile_generation.py: the scanned layers' slices count as copies, dots as matmuls."""
  text = bench.stdlib_text()
  s = bench.random_setup(text, dict(d_model=32, n_layers=2, n_heads=2), **SMALL)
  r = profile_generation.profile(s, bench.prompts_for(text, 20, 2), 4, str(tmp_path))
  assert r["step_ms"] > 0
  assert r["by_kind"]["copy"] > 0 and r["by_kind"]["matmul"] > 0
  shapes = {shape for _, kind, shape, _ in r["top"] if kind == "copy"}
  assert any(shape.startswith("f32[") for shape in shapes)


@pytest.mark.slow  # ~20 s; tests/models/hf checks generation equals transformers
def test_the_transformers_arm_generates_the_cached_bytes_on_the_same_weights(tmp_path):
  """--transformers: the exported BLT decoded by transformers' generate, next to the others."""
  text = bench.stdlib_text()
  s = bench.random_setup(
    text, dict(d_model=32, n_layers=1, n_heads=2), **SMALL, **reference.model_settings()
  )
  s = bench.with_transformers(s, str(tmp_path))
  rows = bench.measure(s, text, [20], [1], new=5, uncached_new=3)
  assert rows[0]["transformers"] > 0 and rows[0]["hf_same_bytes"] is True
  assert "cached / transformers" in bench.table(rows)


def test_a_scans_dynamic_slice_with_its_index_arithmetic_is_a_copy():
  """bench/profile_step.hlo_kinds on hand-written HLO: XLA fuses a scan's per-layer slice
  with its index constants and clamps; that is a copy, not elementwise work."""
  hlo = """
%sliced (p0: f32[4,8,16], p1: s32[]) -> f32[8,16] {
  %p0 = f32[4,8,16]{2,1,0} parameter(0)
  %p1 = s32[] parameter(1)
  %c = s32[] constant(0)
  %lt = pred[] compare(%p1, %c), direction=LT
  %i = s32[] select(%lt, %c, %p1)
  %ds = f32[1,8,16]{2,1,0} dynamic-slice(%p0, %i, %c, %c), dynamic_slice_sizes={1,8,16}
  ROOT %b = f32[8,16]{1,0} bitcast(%ds)
}

%scaled (q0: f32[8,16]) -> f32[8,16] {
  %q0 = f32[8,16]{1,0} parameter(0)
  %two = f32[] constant(2)
  %bc = f32[8,16]{1,0} broadcast(%two), dimensions={}
  ROOT %m = f32[8,16]{1,0} multiply(%q0, %bc)
}

ENTRY %main (a: f32[4,8,16], i: s32[], x: f32[2,8]) -> f32[2,16] {
  %a = f32[4,8,16]{2,1,0} parameter(0)
  %i = s32[] parameter(1)
  %x = f32[2,8]{1,0} parameter(2)
  %dynamic-slice_bitcast_fusion = f32[8,16]{1,0} fusion(%a, %i), kind=kLoop, calls=%sliced
  %mul = f32[8,16]{1,0} fusion(%dynamic-slice_bitcast_fusion), kind=kLoop, calls=%scaled
  ROOT %dot.1 = f32[2,16]{1,0} dot(%x, %mul), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
"""
  kinds = profile_step.hlo_kinds(hlo)
  assert kinds["dynamic-slice_bitcast_fusion"] == "copy"
  assert kinds["mul"] == "elementwise"
  assert kinds["dot.1"] == "matmul"
  assert profile_generation.hlo_shapes(hlo)["dynamic-slice_bitcast_fusion"] == "f32[8,16]"
