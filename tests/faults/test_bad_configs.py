"""Bad input at start-up: a message naming the field (no traceback), exit status 1, and no
trace left behind: no new workdir, nothing of an existing one changed."""

import json
import os

import pytest
from faultlib import argv, run

SLOW = {"unknown config", "misspelt section", "heads do not divide", "missing tokenizer"}
CASES = {  # name: (overrides or a command-line edit, what the message must say)
  "no --config": ("no-config", "--config is required: a config name (base, "),
  "unknown config": ({"config": "tinyy"}, "--config=tinyy: no such config file"),
  "unknown field": ({"train.nosuch": 1}, "config.train.nosuch: no such field; config.train has"),
  "misspelt section": ({"trian.steps": 1}, "Did you mean config.train?"),
  "batch size 0": ({"data.batch_size": 0}, "config.data.batch_size: must be >= 1, got 0"),
  "heads do not divide": ({"model.n_heads": 3}, "config.model.n_heads=3: must divide d_model"),
  "missing tokenizer": (
    {"data.tokenizer": "/nonexistent/tok.json"},
    "config.data.tokenizer='/nonexistent/tok.json': no such tokenizer file",
  ),
}


def command(env, workdir, edit):
  if edit == "no-config":
    return [a for a in argv(env, workdir) if not a.startswith("--config=")]
  if "config" in edit:
    return argv(env, workdir, config=edit["config"])
  return argv(env, workdir, edit)


@pytest.mark.fault("bad config")
@pytest.mark.parametrize(
  "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES]
)
def test_bad_config_is_refused_and_leaves_nothing(env, tmp_path, case):
  edit, says = CASES[case]
  workdir = str(tmp_path / "run")
  rc, out = run(env, workdir, cmd=command(env, workdir, edit))
  assert rc == 1 and says in out, out[-3000:]
  assert "Traceback" not in out
  assert not os.path.exists(workdir)


@pytest.mark.fault("bad config")
def test_a_missing_json_field_names_the_config_field(env, tmp_path):
  docs = tmp_path / "docs.jsonl"
  docs.write_text("".join(json.dumps({"body": f"document {i} " * 20}) + "\n" for i in range(50)))
  workdir = str(tmp_path / "run")
  rc, out = run(env, workdir, {"data.name": f"files:{docs}"})
  assert rc == 1 and "has no field 'text'" in out and "--config.data.text_key=" in out, out[-3000:]
  assert not os.path.exists(workdir)


def snapshot(workdir):
  out = {}
  for root, _, names in os.walk(workdir):
    for n in names:
      with open(os.path.join(root, n), "rb") as f:
        out[os.path.relpath(os.path.join(root, n), workdir)] = f.read()
  return out


@pytest.mark.fault("bad config")
def test_resuming_with_another_model_changes_nothing(env, stopped, copy_of):
  workdir = copy_of(stopped)
  before = snapshot(workdir)
  rc, out = run(env, workdir, {"model.rope_theta": 500.0})
  assert rc == 1 and "config.model.rope_theta=500.0, the workdir's is 10000.0" in out, out[-3000:]
  assert snapshot(workdir) == before
