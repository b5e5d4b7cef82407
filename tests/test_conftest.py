"""The CI switch of tests/conftest.py: a skip for a missing artefact fails under it."""

import os

import pytest

CONFTEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py")

SANDBOX_TESTS = """
import pytest

def test_missing_vocab():
  pytest.skip("missing artefact: llama.cpp vocab gpt-2: not fetched")

def test_missing_module():
  pytest.importorskip("no_such_module_jaxtok")

@pytest.mark.skipif(True, reason="runs as root")
def test_skipped_by_condition():
  pass

def test_passes():
  pass
"""


@pytest.fixture
def sandbox(pytester):
  with open(CONFTEST) as f:
    pytester.makeconftest(f.read().replace('pytest_plugins = ["pytester"]', ""))
  pytester.makepyfile(test_sandbox=SANDBOX_TESTS)
  return pytester


def test_missing_artefacts_fail_under_the_ci_switch(sandbox, monkeypatch):
  monkeypatch.setenv("JAXTOK_REQUIRE_ARTEFACTS", "1")
  result = sandbox.runpytest_subprocess("-p", "no:cacheprovider")
  result.assert_outcomes(passed=1, failed=2, skipped=1)
  result.stdout.fnmatch_lines(["*missing artefact: llama.cpp vocab gpt-2*"])


def test_missing_artefacts_skip_without_it(sandbox, monkeypatch):
  monkeypatch.delenv("JAXTOK_REQUIRE_ARTEFACTS", raising=False)
  result = sandbox.runpytest_subprocess("-p", "no:cacheprovider")
  result.assert_outcomes(passed=1, skipped=3)
