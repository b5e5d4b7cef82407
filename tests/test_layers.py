"""The module graph: one-way layers (import-linter contracts in pyproject.toml), no
first-party import hidden inside a function, and light imports of the lower layers."""

import ast
import os
import subprocess
import sys

from importlinter.cli import lint_imports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_PARTY = ("jaxtok", "pallas_kernels", "configs", "experiments", "bench")


def test_import_linter_contracts_hold(monkeypatch):
  monkeypatch.chdir(ROOT)
  assert lint_imports(no_cache=True, no_logo=True) == 0  # details printed above on failure


def _function_level_imports(path: str) -> list[str]:
  tree = ast.parse(open(path).read(), path)
  found = []
  for fn in ast.walk(tree):
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
      continue
    for node in ast.walk(fn):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        names = [node.module or ""] if node.level == 0 else ["<relative>"]
      else:
        continue
      found += [f"{path}:{node.lineno} {n}" for n in names if n.split(".")[0] in FIRST_PARTY]
  return found


def test_no_first_party_import_inside_a_function():
  found = []
  for pkg in FIRST_PARTY:
    for root, _, files in os.walk(os.path.join(ROOT, pkg)):
      found += [_function_level_imports(os.path.join(root, f)) for f in files if f.endswith(".py")]
  assert not [x for f in found for x in f]


def test_models_import_without_data_pipelines():
  """A model (or a restore) does not load tensorflow_datasets or HF tokenizers."""
  code = (
    "import sys, jaxtok, jaxtok.models.blt\n"
    "print(sorted(m for m in ('tensorflow_datasets', 'tokenizers') if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]"
