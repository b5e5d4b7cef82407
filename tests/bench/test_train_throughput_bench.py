"""The spine's benchmark runs end to end (on the tiny config) and prints its MFU line."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_train_throughput_bench_prints_bytes_per_s_and_mfu(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "bench/train_throughput.py",
      "--config=configs/tiny.py",
      "--repeats=1",
      "--steps=1",
      "--matmul=256",
      f"--json={tmp_path / 'mfu.json'}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  bytes_s = re.search(r"train step \(fixed batch\):.*?([\d.]+) bytes/s", out.stdout)
  mfu = re.search(r"MFU \(model / matmul FLOP/s\):\s+([\d.]+)", out.stdout)
  assert bytes_s and float(bytes_s.group(1)) > 0, out.stdout
  assert mfu and 0 < float(mfu.group(1)) < 1.5, out.stdout
  # The JSON the device check collects holds the same numbers, and its report shows them.
  data = json.loads((tmp_path / "mfu.json").read_text())
  assert data["mfu"] == pytest.approx(float(mfu.group(1)), abs=1e-3)
  report = subprocess.run(
    [sys.executable, "bench/device_report.py", str(tmp_path)], cwd=ROOT, capture_output=True
  )
  table = (tmp_path / "device_check.md").read_text()
  assert report.returncode == 0 and f"MFU {data['mfu']:.3f}" in table
  assert "| BLT training | not measured" in table  # missing parts are named, not dropped
  assert "| BLT input path | not measured" in table
  if importlib.util.find_spec("torch") is None:
    assert "PyTorch baseline skipped: torch is not installed" in out.stdout
    return
  # The PyTorch twin has the model's shapes (parameter count) and its ratio is printed.
  params = re.search(r"\(\d+ threads, ([\d.]+)M params; jaxtok ([\d.]+)M\)", out.stdout)
  assert params and params.group(1) == params.group(2), out.stdout
  ratio = re.search(r"jaxtok / PyTorch bytes/s:\s+([\d.]+)x", out.stdout)
  assert ratio and data["ratio_vs_torch"] == pytest.approx(float(ratio.group(1)), abs=0.01)


def test_device_check_on_cpu_reports_no_accelerator_and_exits_0():
  # The script runs `python` from PATH, as in an activated venv: this interpreter's.
  path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
  out = subprocess.run(
    ["bash", "bench/device_check.sh"],
    cwd=ROOT,
    env=dict(os.environ, PATH=path),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0 and "no accelerator" in out.stdout, out.stdout + out.stderr
