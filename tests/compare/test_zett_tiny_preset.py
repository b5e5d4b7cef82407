"""The tiny ZeTT preset end to end (`-m slow`: minutes on 2 cores): the hypernetwork must beat
FVT and random embeddings on held-out text under tokenizers it never saw in training. The
default run trains ZeTT end to end in tests/train/test_zett_end_to_end.py."""

import pytest

from configs import zett_tiny
from jaxtok.compare import zett as zett_compare


@pytest.mark.slow
def test_tiny_preset_hypernet_beats_fvt_and_random(tmp_path):
  c = zett_tiny.get_config()
  c.train.progress_bar = False
  c.compare.dynamic_merges = ""
  res = zett_compare.run(c, str(tmp_path))
  assert len(res["rows"]) >= 3  # bpe, unigram, wordpiece (+ gpt-2 when its vocab is cached)
  for r in res["rows"]:
    assert r["hypernet"] < r["fvt"], r
    assert r["hypernet"] < r["random"], r
