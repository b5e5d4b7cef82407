"""The patch view, its HTML page and PNG (matplotlib optional)."""

import sys

import numpy as np
import pytest
from flax import nnx

from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.patching import PatchingConfig
from jaxtok.patching.show import patch_view, write_html, write_png

TEXT = "Daenerys Targaryen is in Game of Thrones, un café.".encode()


def test_space_view_and_html(tmp_path):
  view = patch_view(TEXT, PatchingConfig(scheme="space"))
  assert b"".join(view.patches) == TEXT
  # The reference rule: a space ends its patch.
  assert view.patches[:4] == [b"Daenerys ", b"Targaryen ", b"is ", b"in "]
  start = patch_view(TEXT, PatchingConfig(scheme="space", space_rule="start"))
  assert start.patches[:4] == [b"Daenerys", b" Targaryen", b" is", b" in"]
  page = open(write_html(view, str(tmp_path / "p.html"))).read()
  assert page.count('<span class="p') == len(view.patches)


def test_entropy_view_png_and_threshold(tmp_path):
  cfg = TransformerConfig(d_model=32, n_layers=1, n_heads=2, mlp_dim=64)
  em = EntropyModel(Transformer(cfg, rngs=nnx.Rngs(0)), seq_len=64)
  h = patch_view(TEXT, PatchingConfig(scheme="space"), em).entropies
  theta = float(np.median(h))
  view = patch_view(
    TEXT, PatchingConfig(scheme="entropy", entropy_model_workdir="-", threshold=theta), em
  )
  assert view.entropies.shape == (len(TEXT),)
  # Bytes 0 (after BOS) always starts; later ones start exactly where H > θ.
  np.testing.assert_array_equal(view.starts[1:], view.entropies[1:] > theta)
  pytest.importorskip("matplotlib")
  png = write_png(view, str(tmp_path / "p.png"))
  assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_gives_a_clear_error(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  view = patch_view(TEXT, PatchingConfig(scheme="static"))
  with pytest.raises(ImportError, match=r"jaxtok\[plots\]"):
    write_png(view, str(tmp_path / "p.png"))
