import os
import sys

import pytest

# Tests import `configs` and `experiments` from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

pytest_plugins = ["pytester"]  # tests/test_conftest.py runs this file's hook in a sandbox

# The README's test command fetches every artefact the tests check against and sets
# JAXTOK_REQUIRE_ARTEFACTS=1: there, a test skipped for a missing artefact (a message
# starting "missing artefact", or a failed pytest.importorskip) fails instead, so CI
# never passes with checks it did not run.
MISSING_ARTEFACT = ("missing artefact", "could not import")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A TFDS data directory per test module (its tests share what they prepare there)."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  if os.environ.get("JAXTOK_REQUIRE_ARTEFACTS") != "1" or not report.skipped:
    return
  reason = str(getattr(call.excinfo, "value", ""))
  if reason.startswith(MISSING_ARTEFACT):
    report.outcome = "failed"
    report.longrepr = (
      f"{reason}\nJAXTOK_REQUIRE_ARTEFACTS=1: a missing artefact fails the run "
      "(python -m jaxtok.tokenizers.sources fetches them; pip install -e '.[test]')"
    )
