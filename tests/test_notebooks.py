"""The Colab notebooks: their set-up cell installs jaxtok in a fresh environment from the
repository (and does nothing on a re-run), and every notebook runs top to bottom from a
checkout, set-up cell included."""

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ("quickstart.ipynb", "blt.ipynb", "zett.ipynb")


def code_cells(name: str) -> list[str]:
  with open(os.path.join(ROOT, "notebooks", name)) as f:
    cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
  sources = ["".join(c["source"]) for c in cells]
  if "JAXTOK_REPO" not in sources[0]:
    raise AssertionError(f"{name}: the first code cell should be the set-up cell")
  return sources


def run_notebook(name: str, tmp_path, timeout: int) -> str:
  """All code cells as one script, run from notebooks/ like a notebook opened in a checkout."""
  script = tmp_path / "notebook.py"
  script.write_text("\n\n".join(code_cells(name)) + "\n")
  env = dict(os.environ, TMPDIR=str(tmp_path), MPLBACKEND="Agg")
  proc = subprocess.run(
    [sys.executable, str(script)],
    cwd=os.path.join(ROOT, "notebooks"),
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc.stdout


def test_open_in_colab_links_point_at_the_repository():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    repo = tomllib.load(f)["project"]["urls"]["Repository"]
  github = repo.removeprefix("https://github.com/")
  for name in NOTEBOOKS:
    with open(os.path.join(ROOT, "notebooks", name)) as f:
      intro = "".join(json.load(f)["cells"][0]["source"])
    assert f"https://colab.research.google.com/github/{github}/blob/main/notebooks/{name}" in intro
    assert f'"{repo}"' in code_cells(name)[0]  # the set-up cell installs from the same place


def test_setup_cell_installs_jaxtok_in_a_fresh_venv_and_is_idempotent(tmp_path):
  """The set-up cell as Colab runs it (not in a checkout), against this checkout's git HEAD."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = str(venv / "bin" / "python")
  cell = tmp_path / "setup.py"
  cell.write_text(code_cells("quickstart.ipynb")[0])
  env = dict(os.environ, JAXTOK_REPO=f"file://localhost{ROOT}")
  env.pop("PYTHONPATH", None)
  run = lambda *cmd: subprocess.run(
    cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
  )
  first = run(python, str(cell))
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
  assert re.search(r"^installed jaxtok\[plots\] @ git\+file://", first.stdout, re.M), first.stdout
  where = run(python, "-c", "import jaxtok, configs.tiny; print(jaxtok.__file__)")
  assert where.returncode == 0 and where.stdout.startswith(str(venv)), where
  again = run(python, str(cell))  # a re-run (e.g. after a runtime restart) installs nothing
  assert again.returncode == 0 and again.stdout == "", again


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
