"""The same training code on 1 device and on a mesh of 8 fake CPU devices."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = """
import json, sys
import jax
from configs import tiny
from jaxtok.train import trainer
from jaxtok.train.metrics import read_metrics
c = tiny.get_config()
c.data.data_dir, workdir = sys.argv[1], sys.argv[2]
c.mesh.update(data=int(sys.argv[3]), fsdp=int(sys.argv[4]), tensor=int(sys.argv[5]))
c.model.update(n_heads=4, n_kv_heads=4)  # heads divide the tensor axis
c.train.update(steps=6, log_every=3, eval_every=0, progress_bar=False)
r = trainer.train(c, workdir)
losses = read_metrics(workdir, "train/loss")
print("RESULT", json.dumps({"devices": jax.device_count(), "val_bpb": r["val_bpb"],
                            "losses": [losses[s] for s in sorted(losses)]}))
"""


def run(tmp_path, name, mesh, devices):
  env = dict(
    os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=ROOT
  )
  out = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(tmp_path / "tfds"), str(tmp_path / name), *map(str, mesh)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))
  return json.loads(line[len("RESULT ") :])


def test_eight_device_mesh_matches_one_device(tmp_path):
  one = run(tmp_path, "one", (1, 1, 1), 1)
  eight = run(tmp_path, "eight", (2, 2, 2), 8)  # data x fsdp x tensor
  assert eight["devices"] == 8
  assert len(one["losses"]) == 6
  assert eight["losses"] == pytest.approx(one["losses"], rel=2e-4)
  assert eight["val_bpb"] == pytest.approx(one["val_bpb"], rel=2e-4)
