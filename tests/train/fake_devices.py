"""Runs a script on N fake CPU devices in a subprocess (XLA fixes the count at start-up)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(script: str, args, devices: int):
  """(the JSON after the script's `RESULT ` line, its stderr); fails the test if it fails."""
  env = dict(
    os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=ROOT
  )
  out = subprocess.run(
    [sys.executable, "-c", script, *map(str, args)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))
  return json.loads(line[len("RESULT ") :]), out.stderr
