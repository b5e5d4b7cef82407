"""What a ZeTT run resolves from data before it trains: mixed-language training text
(`data.mix`), evaluation tokenizers trained and scored on a text of their own
(`eval.tokenizers="spec@text"`), and the learning curve read back from metrics.jsonl."""

import json

import numpy as np
import pytest

from configs import zett_tiny
from jaxtok.compare import zett as zett_compare
from jaxtok.configlib import ConfigError
from jaxtok.models import workdir as workdir_lib
from jaxtok.tokenizers import targets
from jaxtok.train import prepare as prepare_lib
from jaxtok.train import zett
from jaxtok.train.metrics import MetricWriter

DE = "Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München, Straße {}."
RU = "Съешь же ещё этих мягких французских булок да выпей чаю. Номер {}."


@pytest.fixture()
def texts(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXTOK_CACHE_DIR", str(tmp_path / "cache"))
  for lang, line in (("de", DE), ("ru", RU)):
    (tmp_path / lang).mkdir()
    for i in range(60):
      (tmp_path / lang / f"{i}.txt").write_text("\n".join(line.format(i * 7 + k) for k in range(5)))
  c = zett_tiny.get_config()
  c.data.data_dir = str(tmp_path / "tfds")
  c.data.name = f"files:{tmp_path}/de/*.txt"  # small: a default text builds in a second
  return c, c.data.name, f"files:{tmp_path}/ru/*.txt", tmp_path


def test_mix_trains_on_the_train_documents_of_every_source(texts):
  c, de, ru, tmp = texts
  c.data.update(mix=f"{de},{ru}", mix_docs=1000, mix_doc_bytes=4096)
  with c.unlocked():
    zett.prepare(c, str(tmp / "run"))
  path = c.data.name.removeprefix("files:")
  docs = [json.loads(line)["text"].encode() for line in open(path)]
  for spec in (de, ru):
    train = targets.text_source(spec, "train", c, max_docs=1000, doc_bytes=4096)
    held_out = targets.text_source(spec, "validation", c, max_docs=1000, doc_bytes=4096)
    assert set(train) <= set(docs) and not set(held_out) & set(docs)
  langs = ["ru" if "Съешь".encode() in d else "de" for d in docs]
  assert langs[:6] == ["de", "ru"] * 3  # interleaved: every batch mixes the languages


def test_eval_tokenizer_is_trained_and_scored_on_its_own_text(texts):
  c, de, ru, tmp = texts
  c.eval.tokenizers = f"wordpiece:300@{ru}, unigram:300"  # the second on data.name
  with c.unlocked():
    zett.prepare(c, str(tmp / "run"))
  files, texts_of = dict(c.eval.tokenizer_files), dict(c.eval.tokenizer_texts)
  ru_name = next(n for n in files if n.startswith("wordpiece"))
  assert texts_of == {ru_name: ru, "unigram300": ""}
  assert zett.eval_docs(c, ru) == targets.text_source(
    ru, "validation", c, max_docs=c.eval.docs, doc_bytes=c.eval.doc_bytes
  )
  tok = zett.load_tokenizer(files[ru_name])
  assert any("ш".encode() in b and len(b) > 2 for b in tok.vocab)  # learned on Russian


def test_bad_mix_names_the_field(texts):
  c, _, _, tmp = texts
  c.data.mix = "deb:no-such-package-xyz"
  c.compare.fetch = False
  with c.unlocked(), pytest.raises(ValueError, match="config.data.mix"):
    zett.prepare(c, str(tmp / "run"))


def test_curve_reads_hypernet_and_fvt_per_step(tmp_path):
  w = MetricWriter(str(tmp_path))
  w.write(5, {"loss": 3.0}, prefix="train/")
  for step, bpb in ((10, 4.9), (20, 4.5), (20, 4.4)):  # a resumed run's later row wins
    w.write(step, {"bpb_ru": bpb, "fvt_bpb_ru": 4.8}, prefix="eval/")
  w.close()
  rows = zett_compare.curve(str(tmp_path))
  assert [(r["step"], r["hypernet"]) for r in rows] == [(10, 4.9), (20, 4.4)]
  np.testing.assert_allclose([r["gain"] for r in rows], [-0.1, 0.4])
  assert "| 20 | ru |" in zett_compare.curve_markdown(rows)


def test_a_mixed_language_run_resumes_and_another_mix_is_refused(texts, monkeypatch):
  """data.mix resolves data.name to the mixed corpus; a resume compares the resolved name with
  the workdir's, so the same config resumes and another mix is refused."""
  c, de, ru, tmp = texts
  c.data.update(mix=f"{de},{ru}", mix_docs=1000, mix_doc_bytes=4096)
  run = tmp / "run"
  run.mkdir()
  resolved = prepare_lib.prepare(c, str(run))
  assert resolved.data.name != c.data.name  # the mixed corpus
  (run / workdir_lib.CONFIG_FILE).write_text(resolved.to_json_best_effort())
  monkeypatch.setattr(workdir_lib, "has_checkpoint", lambda workdir: True)
  assert prepare_lib.prepare(c, str(run)).data.name == resolved.data.name
  c.data.mix = de
  with pytest.raises(ConfigError, match="config.data.name="):
    prepare_lib.prepare(c, str(run))
