"""The experiments' command line (experiments/cli.py) and configlib's field check."""

import os
import subprocess
import sys

import pytest

from configs import tiny, tiny_blt
from experiments import cli
from jaxtok.configlib import ConfigError, check_field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_by_name_or_path_from_anywhere(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # not the repository root
  want = os.path.join(cli.CONFIG_DIR, "tiny.py")
  assert cli.locate("tiny") == want
  assert cli.locate("configs/tiny.py") == want
  assert cli.locate("tiny.py") == want
  assert cli.locate("configs/blt_compare.py:small") == os.path.join(
    cli.CONFIG_DIR, "blt_compare.py:small"
  )
  mine = tmp_path / "mine.py"
  mine.write_text("from configs import tiny\nget_config = tiny.get_config\n")
  assert cli.locate("mine.py") == str(mine)  # a file of one's own, relative to here
  with pytest.raises(ConfigError, match="--config=tinyy: no such config file; give a name .*tiny"):
    cli.locate("tinyy")


def test_an_unknown_field_is_named_with_the_fields_there_are():
  c = tiny.get_config()
  check_field(c, "train.lr")
  check_field(c, "train.patch_level.K")
  check_field(c, "model.n_kv_heads")  # a None default (placeholder) is a field too
  with pytest.raises(ConfigError, match=r"config.train.nosuch: no such field; config.train has "):
    check_field(c, "train.nosuch")
  with pytest.raises(ConfigError, match=r"config.trian.steps: .*Did you mean config.train\?"):
    check_field(c, "trian.steps")
  with pytest.raises(ConfigError, match=r"config.train.lr.x: .*config.train.lr is a value"):
    check_field(c, "train.lr.x")


def test_list_fields_prints_every_field_with_its_default_and_meaning():
  """`--list_fields` needs no other flag; it lists each field of the config (once, as
  --config.<path> takes it) with the config's value, and the meaning where one is written."""
  out = subprocess.run(
    [sys.executable, "-m", "experiments.train", "--config=tiny_blt", "--list_fields"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  lines = {l.split()[0]: l for l in out.stdout.splitlines()}
  want = {}

  def walk(node, prefix):
    for k, v in node.items():
      walk(v, f"{prefix}{k}.") if hasattr(v, "items") else want.setdefault(prefix + k, v)

  walk(tiny_blt.get_config(), "")
  assert sorted(lines) == sorted(want)
  for path, value in want.items():
    assert lines[path].split(None, 1)[1].startswith(repr(value)), lines[path]
  assert lines["model.d_local"].endswith("# width of the local encoder and decoder")
  assert "# data-parallel devices" in lines["mesh.data"]
  assert "# patches per row" in lines["patching.max_patches"]
