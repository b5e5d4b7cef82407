"""Tests for corpora: stdlib and local-file tfds builders, tfds datasets, errors."""

import json
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxtok.data import corpora
from jaxtok.data.corpora import CorpusError, load_corpus


def write(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data if isinstance(data, bytes) else data.encode())
  return str(path)


def all_docs(corpus):
  return {corpus.doc_name(i): corpus[i] for i in range(len(corpus))}


def both_splits(name, data_dir, **kwargs):
  train = load_corpus(name, split="train", data_dir=str(data_dir), **kwargs)
  val = load_corpus(name, split="validation", data_dir=str(data_dir), **kwargs)
  return all_docs(train), all_docs(val)


def prepared_dirs(data_dir, builder_name):
  root = os.path.join(data_dir, builder_name)
  return sorted(os.listdir(root)) if os.path.isdir(root) else []


@pytest.fixture
def text_tree(tmp_path):
  """A directory of documents; some bytes are not valid UTF-8."""
  src = tmp_path / "src"
  docs = {f"d{i:02d}.txt": f"document {i}\n".encode() * (i + 1) for i in range(30)}
  docs["nested/deeper/bin.txt"] = b"\x00\xff\xfe\xc3(\x00 NUL and invalid UTF-8"
  docs["nested/code.py"] = b"def f():\n    return 1\n"
  docs["notes.md"] = "# héllo ✓\n".encode()
  for name, data in docs.items():
    write(str(src / name), data)
  write(str(src / "empty.txt"), b"")
  write(str(src / "image.png"), b"\x89PNG not text")  # skipped by the walk
  write(str(src / ".hidden" / "x.txt"), b"hidden")  # skipped by the walk
  return src, docs


# -- local files -------------------------------------------------------------


def test_local_directory_round_trips_bytes_and_splits(text_tree, tmp_path):
  src, docs = text_tree
  train, val = both_splits(f"files:{src}", tmp_path / "dd")
  assert val and train and not set(train) & set(val)
  assert {**train, **val} == docs  # exact bytes; empty/hidden/binary files left out


def test_prepared_once_then_reused_and_rebuilt_on_change(text_tree, tmp_path):
  src, _ = text_tree
  dd = str(tmp_path / "dd")
  load_corpus(f"files:{src}", split="train", data_dir=dd)
  (config,) = prepared_dirs(dd, "local_files")
  record = os.path.join(dd, "local_files", config, "1.0.0")
  stamp = {f: os.stat(os.path.join(record, f)).st_mtime_ns for f in os.listdir(record)}
  again = load_corpus(f"files:{src}", split="train", data_dir=dd)
  assert prepared_dirs(dd, "local_files") == [config]
  assert stamp == {f: os.stat(os.path.join(record, f)).st_mtime_ns for f in os.listdir(record)}

  write(str(src / "d00.txt"), b"changed content")
  train, val = both_splits(f"files:{src}", dd)
  assert len(prepared_dirs(dd, "local_files")) == 2
  assert {**train, **val}["d00.txt"] == b"changed content"
  assert len(again) == len(train)


def test_split_is_deterministic_and_hash_based(text_tree, tmp_path):
  src, docs = text_tree
  a = both_splits(f"files:{src}", tmp_path / "a")
  b = both_splits(f"files:{src}", tmp_path / "b", val_fraction=0.02)
  assert set(a[1]) == set(b[1])
  assert set(a[1]) == corpora.validation_keys(list(docs), 0.02)
  c = both_splits(f"files:{src}", tmp_path / "c", val_fraction=0.5)
  assert len(c[1]) > len(a[1])


def test_validation_keys():
  keys = [f"doc{i}" for i in range(20_000)]
  val = corpora.validation_keys(keys, 0.02)
  assert val == corpora.validation_keys(list(reversed(keys)), 0.02)
  assert 0.015 < len(val) / len(keys) < 0.025
  # Hash-based: adding documents does not move existing ones.
  first_half = set(keys[:10_000])
  assert corpora.validation_keys(first_half, 0.02) == val & first_half
  assert len(corpora.validation_keys(["a", "b"], 0.0)) == 1
  assert len(corpora.validation_keys(["a", "b"], 0.999)) == 1
  with pytest.raises(CorpusError, match="at least 2"):
    corpora.validation_keys(["a"], 0.5)


def test_jsonl_one_document_per_line(tmp_path):
  lines = [json.dumps({"text": f"line {i} ✓", "id": i}) for i in range(50)]
  lines.insert(10, "")  # blank lines are skipped
  lines.insert(20, json.dumps({"text": ""}))  # so are empty documents
  path = write(str(tmp_path / "data" / "a.jsonl"), "\n".join(lines) + "\n")
  train, val = both_splits(f"files:{path}", tmp_path / "dd")
  got = {**train, **val}
  assert len(got) == 50 and val
  assert got["a.jsonl:1"] == "line 0 ✓".encode()
  assert sorted(got.values()) == sorted(f"line {i} ✓".encode() for i in range(50))


def test_jsonl_custom_text_key(tmp_path):
  path = write(
    str(tmp_path / "b.jsonl"), "".join(json.dumps({"content": f"c{i}"}) + "\n" for i in range(5))
  )
  train, val = both_splits(f"files:{path}", tmp_path / "dd", text_key="content")
  assert sorted({**train, **val}.values()) == [f"c{i}".encode() for i in range(5)]
  with pytest.raises(CorpusError, match="no field 'text'.*text_key"):
    load_corpus(f"files:{path}", split="train", data_dir=str(tmp_path / "dd"))


def test_globs_lists_and_bare_paths(text_tree, tmp_path):
  src, docs = text_tree
  dd = tmp_path / "dd"
  train, val = both_splits(f"files:{src}/d0*.txt,{src}/notes.md", dd)
  assert set({**train, **val}) == {f"d0{i}.txt" for i in range(10)} | {"notes.md"}
  train, val = both_splits(os.path.join(str(src), "**", "*.txt"), dd)  # bare glob
  assert "nested/deeper/bin.txt" in {**train, **val}
  bare = load_corpus(str(src), split="train", data_dir=str(dd))  # bare directory
  assert len(bare) == len(docs) - len(both_splits(f"files:{src}", dd)[1])


# -- stdlib ------------------------------------------------------------------


def test_stdlib_file_listing():
  files = corpora.stdlib_files()
  assert len(files) > 500
  assert all(f.endswith(".py") for f in files)
  assert not any("site-packages" in f or "dist-packages" in f for f in files)
  assert any(f.endswith(os.sep + "os.py") for f in files)


def test_stdlib_builds_and_matches_files(tmp_path):
  train = load_corpus("stdlib", split="train", data_dir=str(tmp_path))
  val = load_corpus("stdlib", split="validation", data_dir=str(tmp_path))
  (config,) = prepared_dirs(str(tmp_path), "stdlib")
  assert config.startswith("py{}_{}_{}-".format(*sys.version_info[:3]))
  names = [train.doc_name(i) for i in range(len(train))]
  val_names = [val.doc_name(i) for i in range(len(val))]
  assert len(val) >= 1 and len(train) > 500 and not set(names) & set(val_names)
  assert 0.005 < len(val) / (len(val) + len(train)) < 0.05
  stdlib = corpora.sysconfig.get_paths()["stdlib"]
  for i in range(0, len(train), 97):
    with open(os.path.join(stdlib, names[i]), "rb") as f:
      assert train[i] == f.read()


# -- tfds datasets -------------------------------------------------------------


class TinyText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A tfds dataset with only train/test splits and a Text feature."""

  VERSION = tfds.core.Version("1.0.0")
  code_path = None

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {"sentence": tfds.features.Text(), "label": tfds.features.Scalar(np.int64)}
      ),
    )

  def _split_generators(self, dl_manager):
    return {
      "train": self._generate_examples("train", 8),
      "test": self._generate_examples("test", 3),
    }

  def _generate_examples(self, split, n):
    for i in range(n):
      yield f"{split}{i}", {"sentence": f"{split} sentence {i} ✓", "label": i}


def test_prepared_tfds_dataset_maps_validation_to_test(tmp_path):
  TinyText(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  test = load_corpus("tiny_text", split="validation", data_dir=str(tmp_path), text_key="sentence")
  assert sorted(test[i] for i in range(len(test))) == sorted(
    f"test sentence {i} ✓".encode() for i in range(3)
  )
  assert (
    len(load_corpus("tiny_text", split="train", data_dir=str(tmp_path), text_key="sentence")) == 8
  )
  with pytest.raises(CorpusError, match="no feature 'text'"):
    load_corpus("tiny_text", split="train", data_dir=str(tmp_path))
  with pytest.raises(CorpusError, match="no split 'dev'"):
    load_corpus("tiny_text", split="dev", data_dir=str(tmp_path), text_key="sentence")


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(CorpusError) as err:
    load_corpus("lm1b", split="train", data_dir=str(tmp_path))
  msg = str(err.value)
  assert "not prepared" in msg and str(tmp_path) in msg
  assert "tfds build lm1b --file_format=array_record" in msg
  assert "download_and_prepare()" in msg
  assert not os.listdir(tmp_path)


# -- errors --------------------------------------------------------------------


def test_unknown_name(tmp_path):
  with pytest.raises(CorpusError, match="unknown corpus 'no_such_corpus_xyz'.*stdlib"):
    load_corpus("no_such_corpus_xyz", split="train", data_dir=str(tmp_path))


def test_nothing_matches(tmp_path):
  with pytest.raises(CorpusError, match="matches nothing"):
    load_corpus(f"files:{tmp_path}/nope/*.txt", split="train", data_dir=str(tmp_path))
  with pytest.raises(CorpusError, match="matches nothing"):
    load_corpus(f"files:{tmp_path}/missing.txt", split="train", data_dir=str(tmp_path))


def test_directory_without_text_files(tmp_path):
  (tmp_path / "empty_dir").mkdir()
  write(str(tmp_path / "bin_dir" / "x.bin"), b"\x00")
  for d in ("empty_dir", "bin_dir"):
    with pytest.raises(CorpusError, match=f"directory .*{d}.* contains no text files"):
      load_corpus(f"files:{tmp_path / d}", split="train", data_dir=str(tmp_path / "dd"))


def test_empty_corpus(tmp_path):
  write(str(tmp_path / "src" / "a.txt"), b"")
  write(str(tmp_path / "src" / "b.jsonl"), "\n" + json.dumps({"text": ""}) + "\n")
  dd = tmp_path / "dd"
  with pytest.raises(CorpusError, match="is empty"):
    load_corpus(f"files:{tmp_path / 'src'}", split="train", data_dir=str(dd))
  assert prepared_dirs(str(dd), "local_files") == []
  write(str(tmp_path / "one" / "a.txt"), b"only one document")
  with pytest.raises(CorpusError, match="at least 2"):
    load_corpus(f"files:{tmp_path / 'one'}", split="train", data_dir=str(dd))


def test_invalid_json_line_names_file_and_line_and_rerun_works(tmp_path):
  path = str(tmp_path / "src" / "bad.jsonl")
  good = [json.dumps({"text": f"t{i}"}) for i in range(4)]
  write(path, "\n".join(good[:2] + ["{not json"] + good[2:]) + "\n")
  dd = tmp_path / "dd"
  with pytest.raises(CorpusError, match=r"invalid JSON in .*bad\.jsonl, line 3"):
    load_corpus(f"files:{path}", split="train", data_dir=str(dd))
  assert prepared_dirs(str(dd), "local_files") == []  # nothing half-prepared
  write(path, "[1, 2]\n")
  with pytest.raises(CorpusError, match="line 1 is a JSON list"):
    load_corpus(f"files:{path}", split="train", data_dir=str(dd))
  write(path, b'{"text": "\xff"}\n')
  with pytest.raises(CorpusError, match="invalid JSON .*line 1"):
    load_corpus(f"files:{path}", split="train", data_dir=str(dd))
  write(path, "\n".join(good) + "\n")
  train, val = both_splits(f"files:{path}", dd)
  assert len(train) + len(val) == 4


def test_unreadable_and_special_files(tmp_path):
  src = tmp_path / "src"
  write(str(src / "ok.txt"), b"fine")
  write(str(src / "ok2.txt"), b"also fine")
  dd = str(tmp_path / "dd")
  os.symlink(str(tmp_path / "gone.txt"), str(src / "dangling.txt"))
  with pytest.raises(CorpusError, match="cannot read corpus file .*dangling.txt"):
    load_corpus(f"files:{src}", split="train", data_dir=dd)
  os.remove(src / "dangling.txt")
  os.mkfifo(src / "pipe.txt")
  with pytest.raises(CorpusError, match="pipe.txt is not a regular file"):
    load_corpus(f"files:{src}/*.txt", split="train", data_dir=dd)
  os.remove(src / "pipe.txt")
  assert len(load_corpus(f"files:{src}", split="train", data_dir=dd)) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(tmp_path):
  path = write(str(tmp_path / "src" / "secret.txt"), b"x")
  write(str(tmp_path / "src" / "other.txt"), b"y")
  os.chmod(path, 0)
  try:
    with pytest.raises(CorpusError, match="cannot read corpus file .*secret.txt"):
      load_corpus(f"files:{tmp_path / 'src'}", split="train", data_dir=str(tmp_path / "dd"))
  finally:
    os.chmod(path, 0o644)


def test_bad_arguments(tmp_path):
  with pytest.raises(CorpusError, match="val_fraction"):
    load_corpus("stdlib", split="train", data_dir=str(tmp_path), val_fraction=1.0)


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv("JAXTOK_DATA_DIR", "/some/where")
  assert corpora.default_data_dir() == "/some/where"
  monkeypatch.delenv("JAXTOK_DATA_DIR")
  assert corpora.default_data_dir().endswith(os.path.join(".cache", "jaxtok", "tfds"))


def test_data_dir_inside_the_corpus_directory_is_left_out(text_tree):
  src, docs = text_tree
  dd = str(src / "prepared")  # its dataset_info.json would otherwise be a document
  for _ in range(2):
    train, val = both_splits(f"files:{src}", dd)
  assert prepared_dirs(dd, "local_files") == prepared_dirs(dd, "local_files")[:1]
  assert {**train, **val} == docs


def test_random_access_from_threads(text_tree, tmp_path):
  from concurrent.futures import ThreadPoolExecutor

  src, _ = text_tree
  corpus = load_corpus(f"files:{src}", split="train", data_dir=str(tmp_path / "dd"))
  indices = np.random.default_rng(0).integers(0, len(corpus), size=400)
  expected = [corpus[int(i)] for i in indices]
  with ThreadPoolExecutor(4) as pool:
    assert list(pool.map(lambda i: corpus[int(i)], indices)) == expected
  assert corpus[-1] == corpus[len(corpus) - 1]
  with pytest.raises(IndexError):
    corpus[len(corpus)]


def test_permission_denied_as_root_too(tmp_path, monkeypatch):
  """Root ignores chmod 000, so simulate the EACCES that open() gives other users."""
  secret = write(str(tmp_path / "src" / "secret.txt"), b"x")
  write(str(tmp_path / "src" / "other.txt"), b"y")
  real_open = open

  def denying_open(path, *args, **kwargs):
    if os.fspath(path) == secret:
      raise PermissionError(13, "Permission denied", path)
    return real_open(path, *args, **kwargs)

  monkeypatch.setattr(corpora, "open", denying_open, raising=False)
  with pytest.raises(CorpusError, match="cannot read .*secret.txt: Permission denied"):
    load_corpus(f"files:{tmp_path / 'src'}", split="train", data_dir=str(tmp_path / "dd"))
  assert prepared_dirs(str(tmp_path / "dd"), "local_files") == []
