"""The spine's benchmark runs end to end (on the tiny config) and prints its MFU line."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_train_throughput_bench_prints_bytes_per_s_and_mfu():
  out = subprocess.run(
    [
      sys.executable,
      "bench/train_throughput.py",
      "--config=configs/tiny.py",
      "--repeats=1",
      "--steps=1",
      "--matmul=256",
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
