"""The experiments' command line (experiments/cli.py) and configlib's field check."""

import os

import pytest

from configs import tiny
from experiments import cli
from jaxtok.configlib import ConfigError, check_field


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
