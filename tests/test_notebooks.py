"""The Colab notebooks run top to bottom from a checkout (their set-up cell, which pip-installs
jaxtok, is replaced by putting the checkout on sys.path)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREAMBLE = f"import os, sys\nos.chdir({ROOT!r})\nsys.path.insert(0, {ROOT!r})\n"


def notebook_script(name: str) -> str:
  with open(os.path.join(ROOT, "notebooks", name)) as f:
    cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
  sources = ["".join(c["source"]) for c in cells]
  if "pip" not in sources[0]:
    raise AssertionError(f"{name}: the first code cell should be the set-up cell")
  return PREAMBLE + "\n\n".join(sources[1:]) + "\n"


def run_notebook(name: str, tmp_path, timeout: int) -> str:
  script = tmp_path / "notebook.py"
  script.write_text(notebook_script(name))
  env = dict(os.environ, TMPDIR=str(tmp_path), MPLBACKEND="Agg")
  proc = subprocess.run(
    [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=timeout
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc.stdout


def test_quickstart(tmp_path):
  out = run_notebook("quickstart.ipynb", tmp_path, timeout=600)
  assert "val_bpb" in out


@pytest.mark.slow
def test_blt_notebook(tmp_path):
  pytest.importorskip("matplotlib")
  pytest.importorskip("IPython")
  out = run_notebook("blt.ipynb", tmp_path, timeout=1200)
  assert "bytes/patch" in out and "uncached" in out  # the notebook asserts equal bytes
  assert (tmp_path / "jaxtok_blt_notebook" / "patches.png").exists()


@pytest.mark.slow
def test_zett_notebook(tmp_path):
  pytest.importorskip("IPython")
  run_notebook("zett.ipynb", tmp_path, timeout=1800)
  root = tmp_path / "jaxtok_zett_notebook"
  rows = json.loads((root / "results.json").read_text())["rows"]
  assert rows and all(r["hypernet"] < r["random"] for r in rows), rows
  assert (root / "unigram_2048" / "checkpoints").is_dir()
