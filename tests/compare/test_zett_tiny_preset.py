"""The tiny ZeTT preset end to end (in CI): the hypernetwork must beat FVT and random
embeddings on held-out text under tokenizers it never saw in training."""

from configs import zett_tiny
from jaxtok.compare import zett as zett_compare


def test_tiny_preset_hypernet_beats_fvt_and_random(tmp_path):
  c = zett_tiny.get_config()
  c.train.progress_bar = False
  c.compare.dynamic_merges = ""
  res = zett_compare.run(c, str(tmp_path))
  assert len(res["rows"]) >= 3  # bpe, unigram, wordpiece (+ gpt-2 when its vocab is cached)
  for r in res["rows"]:
    assert r["hypernet"] < r["fvt"], r
    assert r["hypernet"] < r["random"], r
