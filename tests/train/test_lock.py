"""One writer per workdir (jaxtok/train/lock.py)."""

import json
import os
import subprocess
import sys

import pytest

from jaxtok.train import lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = """
import sys, time
from jaxtok.train import lock
with lock.locked(sys.argv[1]):
  print("held", flush=True)
  time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
  """Another process holding tmp_path/run's lock."""
  workdir = str(tmp_path / "run")
  cmd = [sys.executable, "-c", HOLD, workdir]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
  assert proc.stdout.readline().strip() == "held"
  yield workdir, proc
  proc.kill()
  proc.wait()


def test_a_second_process_is_refused_with_the_owner_named(holder):
  workdir, proc = holder
  with pytest.raises(lock.WorkdirBusyError, match=f"in use by pid {proc.pid} on "):
    with lock.locked(workdir):
      pass


def test_the_lock_of_a_killed_process_is_taken_over_and_reported(holder):
  workdir, proc = holder
  proc.kill()
  proc.wait()
  said = []
  with lock.locked(workdir, report=said.append):
    owner = json.loads(open(os.path.join(workdir, lock.LOCK_FILE)).read())
  assert owner["pid"] == os.getpid()
  assert len(said) == 1 and f"taking over the lock of pid {proc.pid}" in said[0]


def test_a_clean_release_leaves_nothing_to_report(tmp_path):
  said = []
  with lock.locked(str(tmp_path), report=said.append):
    pass
  with lock.locked(str(tmp_path), report=said.append):
    pass
  assert said == []
  assert open(tmp_path / lock.LOCK_FILE).read() == ""


def test_a_workdir_created_for_a_run_that_fails_at_once_is_removed(tmp_path):
  new = tmp_path / "new"
  with pytest.raises(ValueError):
    with lock.locked(str(new)):
      raise ValueError("config.data.batch_size: must be >= 1")
  assert not new.exists()
  old = tmp_path / "old"
  old.mkdir()
  with pytest.raises(ValueError):
    with lock.locked(str(old)):
      raise ValueError("refused")
  assert old.exists()  # not ours to remove
