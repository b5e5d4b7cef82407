"""Phase cost report: the median step time resists load bursts; ratios by hand."""

import math

import pytest

from jaxtok.models.flops import Flops
from jaxtok.train.phases import Phase, median_step_time, new_stats, report


def test_median_step_time_weighs_windows_by_steps():
  # 40 steps at 0.1 s, one burst window of 5 steps at 1 s each: the median ignores the burst.
  assert median_step_time([[20, 2.0], [5, 5.0], [20, 2.0]]) == pytest.approx(0.1)
  assert median_step_time([[1, 3.0], [3, 3.0]]) == pytest.approx(1.0)
  assert math.isnan(median_step_time([]))


def test_report_by_hand():
  token = Flops({"mlp": 8.0})
  phases = [
    Phase("patch", 6, loss_fn=None, flops=token.scaled(0.25), cost=0.25),
    Phase("train", 2, loss_fn=None, flops=token),
  ]
  stats = [new_stats(), new_stats()]
  stats[0].update(bytes=60.0, time=3.0, timed_steps=6, windows=[[6, 3.0]])
  stats[1].update(bytes=20.0, time=4.0, timed_steps=2, windows=[[2, 4.0]])
  r = report(phases, stats)
  assert r["relative_cost"] == pytest.approx((6 * 0.25 + 2) / 8)
  # FLOPs: 3 x forward per byte x bytes; against all 80 bytes at the token rate.
  assert r["phases"][0]["train_flops"] == pytest.approx(3 * 2.0 * 60)
  assert r["relative_train_flops"] == pytest.approx((3 * 2 * 60 + 3 * 8 * 20) / (3 * 8 * 80))
  # 0.5 s per patch step, 2 s per token step: (6 x 0.5 + 2 x 2) / (8 x 2).
  assert r["wall_clock_ratio"] == pytest.approx(7 / 16)
  assert r["wall_clock_ratio_median"] == pytest.approx(7 / 16)
  assert "relative_cost" not in report(phases[1:], stats[1:])
