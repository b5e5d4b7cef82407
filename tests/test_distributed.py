"""Settings of the multi-process runtime that cannot work fail before anything starts,
naming the flag; with nothing asked or detected, a run stays one process."""

import pytest

from jaxtok import distributed


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
  for var in distributed.ENV.values():
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setattr(distributed, "cluster_detected", lambda: False)


def test_auto_without_coordinator_or_cluster_stays_one_process():
  assert distributed.initialize("auto") is False
  assert distributed.initialize("off", num_processes=4, process_id=1) is False


def test_process_count_without_coordinator_is_refused(monkeypatch):
  with pytest.raises(distributed.DistributedError, match="--coordinator_address"):
    distributed.initialize("auto", num_processes=2, process_id=1)
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  with pytest.raises(distributed.DistributedError, match="--coordinator_address"):
    distributed.initialize("auto")


def test_bad_settings_are_refused(monkeypatch):
  with pytest.raises(distributed.DistributedError, match="--distributed='yes'"):
    distributed.initialize("yes")
  with pytest.raises(distributed.DistributedError, match=r"--process_id=2 must be in \[0, "):
    distributed.initialize("on", coordinator_address="localhost:1", num_processes=2, process_id=2)
  monkeypatch.setenv("JAX_PROCESS_ID", "one")
  with pytest.raises(distributed.DistributedError, match="JAX_PROCESS_ID='one' is not an integer"):
    distributed.initialize("on", coordinator_address="localhost:1", num_processes=2)
