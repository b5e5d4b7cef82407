"""The fault suite: the real CLI (`python -m experiments.train`) in subprocesses on the tiny
config, interrupted and damaged in every way a run can be, compared with an uninterrupted run.

Every test here is marked `fault(kind)`; the summary at the end counts trials, kinds and
passes: `python -m pytest tests/faults -m ""` runs all of them (the default run leaves out
the `slow` ones).
"""

from __future__ import annotations

import collections
import os
import shutil
import signal

import pytest
from faultlib import finish, last_step, outcome, start, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
  config.addinivalue_line("markers", "fault(kind): a fault-injection trial of that kind")


@pytest.fixture(scope="session")
def env(tmp_path_factory):
  """The environment of every run: shared data and compilation caches (each process compiles
  the same steps), a working directory that is not the repository."""
  root = tmp_path_factory.mktemp("faults")
  e = dict(os.environ)
  e.update(
    PYTHONPATH=os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]),
    TF_CPP_MIN_LOG_LEVEL="3",
    JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  return {"env": e, "data_dir": str(root / "tfds"), "cwd": str(root)}


@pytest.fixture(scope="session")
def reference(env, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  finish(env, workdir)
  return outcome(workdir)


@pytest.fixture(scope="session")
def stopped(env, reference, tmp_path_factory):
  """A run stopped (SIGTERM) after step 30: checkpoints 21, 28 and the stop step."""
  workdir = str(tmp_path_factory.mktemp("stopped"))
  proc = start(env, workdir)
  wait_for(lambda: last_step(workdir) >= 30, proc)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0 and "SIGTERM" in out, out[-3000:]
  return workdir


@pytest.fixture
def copy_of(tmp_path):
  def copy(workdir):
    dst = str(tmp_path / "run")
    shutil.copytree(workdir, dst)
    return dst

  return copy


# --- the counts ------------------------------------------------------------------------------

_results: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome_ = yield
  report = outcome_.get_result()
  marker = item.get_closest_marker("fault")
  if marker is None:
    return
  if report.when == "call" or (report.when == "setup" and not report.passed):
    _results[marker.args[0]][report.outcome] += 1


def pytest_terminal_summary(terminalreporter):
  if not _results:
    return
  tr = terminalreporter
  total = collections.Counter()
  for counts in _results.values():
    total.update(counts)
  tr.section("fault suite")
  for kind in sorted(_results):
    c = _results[kind]
    tr.write_line(
      f"{kind:<28} {sum(c.values()):>3} trials  {c['passed']:>3} passed  {c['failed']:>3} failed"
    )
  tr.write_line(
    f"fault suite: {sum(total.values())} trials of {len(_results)} kinds, "
    f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped"
  )
