"""One workdir, one writer: a second run is refused while the first lives; the lock of a
killed run is taken over (and said so)."""

import signal

import pytest
from faultlib import assert_same_as, finish, kill9, last_step, run, start, wait_for


@pytest.mark.fault("two writers")
def test_a_second_run_on_a_busy_workdir_is_refused(env, reference, tmp_path):
  workdir = str(tmp_path / "run")
  first = start(env, workdir)
  wait_for(lambda: last_step(workdir) >= 7, first)
  first.send_signal(signal.SIGSTOP)  # keep it alive, holding the workdir, while the second starts
  try:
    rc, out = run(env, workdir)
  finally:
    first.send_signal(signal.SIGCONT)
  assert rc == 1 and f"is in use by pid {first.pid} on " in out, out[-3000:]
  assert "Traceback" not in out
  out, _ = first.communicate(timeout=600)
  assert first.returncode == 0, out[-3000:]
  assert_same_as(reference, workdir)


@pytest.mark.fault("stale lock")
@pytest.mark.slow  # tests/train/test_lock.py checks the takeover in the default run
def test_the_lock_of_a_killed_run_is_taken_over(env, reference, tmp_path):
  workdir = str(tmp_path / "run")
  first = start(env, workdir)
  wait_for(lambda: last_step(workdir) >= 15, first)
  kill9(first)
  out = finish(env, workdir)
  assert f"taking over the lock of pid {first.pid} on " in out, out[-3000:]
  assert_same_as(reference, workdir)
