"""Workdirs at gs:// URLs (issue 15.4), without a network.

A fake GCS: etils.epath's backends are swapped (`epath.testing.mock_epath`) for the
local one with gs://bucket/... mapped to a folder, and orbax's tensorstore spec for a
gs:// path is pointed at that folder too. Everything else runs orbax's own gs:// code
(commit_success.txt instead of a rename). The working directory is another, empty
folder: code that turned the URL into a local path (`os.path.abspath`: ./gs:/bucket)
or opened it with `open()` leaves its files there, and the checks fail.
"""

import json
import os
import socket
import unittest.mock

import jax.numpy as jnp
import numpy as np
import pytest
from etils.epath import testing as epath_testing
from orbax.checkpoint._src.path import gcs_utils

import jaxtok
from configs import tiny
from jaxtok import checkpoint as ckpt_lib
from jaxtok import paths
from jaxtok.models import workdir as workdir_lib
from jaxtok.train import lock, trainer
from jaxtok.train.metrics import MetricWriter, read_metrics, read_rows

URL = "gs://bucket/run"
EPATH_FUNCTIONS = (
  *("copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open"),
  *("remove", "rename", "replace", "rmtree", "stat", "walk"),
)


@pytest.fixture
def gcs(tmp_path, monkeypatch):
  """The folder that plays the bucket store; the working directory is an empty other one."""
  root = str(tmp_path / "gcs")
  os.makedirs(root)
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)

  def local(p):
    s = os.fspath(p)
    return os.path.join(root, s[len("gs://") :]) if s.startswith("gs://") else s

  def url(s):
    return "gs://" + os.path.relpath(s, root) if str(s).startswith(root + os.sep) else s

  def mocked(name):
    def fn(original, *args, **kw):
      out = original(*[local(a) for a in args], **kw)
      if name == "glob":
        return [url(x) for x in out]
      if name == "walk":
        return ((url(r), d, f) for r, d, f in out)
      return out

    return fn

  with (
    epath_testing.mock_epath(**{n: mocked(n) for n in EPATH_FUNCTIONS}),
    unittest.mock.patch.object(
      gcs_utils, "get_kvstore_for_gcs", lambda p: {"driver": "file", "path": local(p)}
    ),
    unittest.mock.patch.object(gcs_utils, "is_hierarchical_namespace_enabled", lambda p: False),
  ):
    yield lambda rel="": os.path.join(root, "bucket", "run", rel)
  assert os.listdir(cwd) == [], "something was written to a local path"


def small_config(data_dir, **train):
  c = tiny.get_config()
  c.data.data_dir = data_dir
  c.data.eval_batches = 2
  c.data.tokenizer = "bpe:300"
  c.train.progress_bar = False
  c.train.update(steps=12, ckpt_every=5, log_every=3, eval_every=0, **train)
  return c


def test_a_gs_workdir_trains_resumes_and_restores(gcs, data_dir, tmp_path, capsys):
  c = small_config(data_dir)
  out = trainer.train(c, URL, stop_after=7)  # interrupted off-checkpoint
  assert out["stopped_by"] == "stop_after"
  for f in ("config.json", "tokenizer.json", "metrics.jsonl", "checkpoints/7/commit_success.txt"):
    assert os.path.exists(gcs(f)), f
  assert not os.path.exists(gcs(lock.LOCK_FILE))  # released
  assert max(r["step"] for r in read_rows(URL)) == 7

  trainer.train(c, URL)  # resumes from the checkpoint the stop wrote
  assert "resumed from gs://bucket/run/checkpoints at step 7" in capsys.readouterr().out
  results = json.loads(open(gcs("results.json")).read())
  assert results["steps"] == 12

  straight = str(tmp_path / "straight")
  trainer.train(c, straight)
  a, b = read_metrics(straight, "train/loss"), read_metrics(URL, "train/loss")
  assert sorted(b) == list(range(1, 13))  # each step once, after the resume too
  assert [a[s] for s in sorted(a)] == [b[s] for s in sorted(a)]  # bitwise equal

  model, config = jaxtok.restore(URL)
  assert config.data.tokenizer_file == f"{URL}/tokenizer.json"
  assert np.isfinite(np.asarray(model(jnp.arange(4, 36)[None]))).all()
  assert workdir_lib.tokenizer_path(URL) == f"{URL}/tokenizer.json"


def test_tensorboard_is_left_out_with_a_line_when_it_cannot_write_the_url(gcs, capsys):
  w = MetricWriter(URL)  # tensorboardX's gs:// writer needs google-cloud-storage
  w.write(1, {"loss": 2.0}, prefix="train/")
  w.close()
  said = capsys.readouterr().out
  if w._tb is None:
    assert said.count("TensorBoard") == 1 and "metrics.jsonl is written" in said
  assert read_rows(URL) == [{"step": 1, "train/loss": 2.0}]


def test_metrics_of_a_killed_run_are_resumed_each_step_once(gcs):
  w = MetricWriter(URL)
  for s in range(1, 8):
    w.write(s, {"loss": 1.0 / s}, prefix="train/")
  w.flush()
  w.write(8, {"loss": 0.125}, prefix="train/")  # not flushed: lost with the process
  w = MetricWriter(URL, resume_step=5)
  for s in (6, 7):
    w.write(s, {"loss": 1.0 / s}, prefix="train/")
  w.close()
  assert [r["step"] for r in read_rows(URL)] == list(range(1, 8))
  w = MetricWriter(URL)  # no resume step: appended to, as a local file is
  w.write(8, {"loss": 0.125}, prefix="train/")
  w.close()
  assert [r["step"] for r in read_rows(URL)] == list(range(1, 9))


def test_the_lock_of_a_url_workdir(gcs):
  path = gcs(lock.LOCK_FILE)
  os.makedirs(os.path.dirname(path))
  other = {"pid": 1, "host": socket.gethostname() + "-other", "since": "then", "argv": "x"}
  with open(path, "w") as f:
    json.dump(other, f)
  with pytest.raises(lock.WorkdirBusyError, match=f"delete {URL}/{lock.LOCK_FILE}"):
    with lock.locked(URL):
      pass
  dead = {**other, "host": socket.gethostname(), "pid": 2**22 + 1}  # above pid_max: no process
  with open(path, "w") as f:
    json.dump(dead, f)
  said = []
  with lock.locked(URL, report=said.append):
    assert json.loads(open(path).read())["pid"] == os.getpid()
    with pytest.raises(lock.WorkdirBusyError, match="in use by pid"):  # this live process
      with lock.locked(URL):
        pass
  assert len(said) == 1 and f"taking over the lock of pid {dead['pid']}" in said[0]
  assert not os.path.exists(path)


def test_write_atomic_and_set_aside_on_a_url(gcs):
  ckpt_lib.write_atomic(f"{URL}/a/results.json", "{}")
  assert open(gcs("a/results.json")).read() == "{}"
  ckpt = ckpt_lib.Checkpointer(f"{URL}/checkpoints", async_save=False)
  ckpt.save(1, {"params": {"w": jnp.ones(3)}})
  ckpt.save(2, {"params": {"w": jnp.ones(3) * 2}})
  assert ckpt.directory == f"{URL}/checkpoints" and ckpt.all_steps() == [1, 2]
  dest = ckpt.set_aside(2)
  assert dest.startswith(f"{URL}/checkpoints.damaged/2.") and ckpt.all_steps() == [1]
  assert ckpt.restore({"params": {"w": jnp.zeros(3)}}).step == 1
  ckpt.close()


@pytest.mark.parametrize("url", ["memory://x/run", "s3://bucket/run", "ftp://host/run"])
def test_an_unsupported_url_is_refused_naming_workdir(url, data_dir):
  with pytest.raises(paths.UnsupportedPathError, match=f"--workdir='{url}'"):
    trainer.train(small_config(data_dir), url)
  assert paths.check("file:///tmp/run") == "/tmp/run"  # a file:// URL is a local path
