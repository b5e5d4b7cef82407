"""Resuming: the workdir's files are the truth; a config that disagrees is refused before
anything is written (jaxtok/train/prepare.py)."""

import os
import shutil

import pytest

import jaxtok
from configs import tiny
from jaxtok.configlib import ConfigError
from jaxtok.tokenizers import bpe
from jaxtok.train import prepare, trainer


def bpe_config(data_dir):
  c = tiny.get_config()
  c.data.update(data_dir=data_dir, eval_batches=1, tokenizer="bpe:300")
  c.train.update(steps=2, eval_every=0, progress_bar=False)
  return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  workdir = str(tmp_path_factory.mktemp("run"))
  trainer.train(bpe_config(data_dir), workdir)
  return data_dir, workdir


def files(workdir):
  out = {}
  for root, _, names in os.walk(workdir):
    for n in names:
      with open(os.path.join(root, n), "rb") as f:
        out[os.path.relpath(os.path.join(root, n), workdir)] = f.read()
  return out


def refused(config, workdir, match):
  before = files(workdir)
  with pytest.raises(ConfigError, match=match):
    prepare.prepare(config, workdir)
  assert files(workdir) == before  # nothing written, nothing replaced
  jaxtok.restore(workdir)  # and the workdir still restores


def test_another_tokenizer_is_refused(run, tmp_path):
  data_dir, workdir = run
  for vocab in (300, 280):
    path = str(tmp_path / f"other{vocab}.json")
    bpe.train_bpe([b"quite other text, other words %d" % i for i in range(200)], vocab).save(path)
    c = bpe_config(data_dir)
    c.data.tokenizer = path
    refused(c, workdir, r"config.data.tokenizer=.*holds another tokenizer")


def test_another_model_or_data_stream_is_refused(run):
  data_dir, workdir = run
  c = bpe_config(data_dir)
  c.model.rope_theta = 500.0  # same shapes: the checkpoint would restore and mean nothing
  c.data.seq_len = 64
  refused(
    c,
    workdir,
    r"config.model.rope_theta=500.0, the workdir's is 10000.0; "
    r"config.data.seq_len=64, the workdir's is 128: .* holds checkpoints",
  )


def test_what_only_changes_how_it_runs_may_change(run, tmp_path):
  data_dir, workdir = run
  c = bpe_config(data_dir)
  c.model.update(remat="full", scan_layers=False)
  c.train.update(lr=1e-3, steps=10)
  same = str(tmp_path / "same.json")
  shutil.copy(os.path.join(workdir, "tokenizer.json"), same)
  c.data.tokenizer = same  # the same tokenizer, from another path
  before = files(workdir)
  resolved = prepare.prepare(c, workdir)
  assert files(workdir) == before
  assert resolved.data.tokenizer_file == os.path.join(workdir, "tokenizer.json")
  assert resolved.model.vocab_size == 300
