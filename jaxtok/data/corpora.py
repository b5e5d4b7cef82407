"""Text corpora as tfds datasets in array_record format, read without TensorFlow.

Three kinds of corpus, all opened with `load_corpus(name, split=...)`:

* `"stdlib"`: every `*.py` file of the running Python's standard library, one
  document per file. Present on every machine, so it is the default corpus.
* `"files:<path-or-glob>[,<path-or-glob>...]"` (or a bare existing path/glob):
  local `.txt`/`.md`/`.py`/... files, one document per file, and `.jsonl` files,
  one document per line.
* any tfds dataset that was prepared in array_record format (`lm1b`, ...).

The first two are written once, by a tfds `GeneratorBasedBuilder`, into
`data_dir` and reused afterwards. Documents are stored as raw bytes, so text
that is not valid UTF-8 reaches the byte model unchanged. Each document goes to
`train` or `validation` by a hash of its name, so the split is the same on every
machine and does not move when other documents are added.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import stat
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging as absl_logging

DEFAULT_VAL_FRACTION = 0.02
DATA_DIR_ENV = "JAXTOK_DATA_DIR"

# Extensions read when a directory is walked; explicitly named files and glob
# matches are read whatever their extension.
JSONL_EXTENSIONS = frozenset({".jsonl"})
TEXT_EXTENSIONS = (
  frozenset(
    {
      ".txt",
      ".text",
      ".md",
      ".rst",
      ".org",
      ".tex",
      ".html",
      ".htm",
      ".xml",
      ".json",
      ".csv",
      ".tsv",
      ".yaml",
      ".yml",
      ".toml",
      ".cfg",
      ".ini",
      ".py",
      ".pyi",
      ".c",
      ".h",
      ".cc",
      ".cpp",
      ".hpp",
      ".rs",
      ".go",
      ".java",
      ".js",
      ".ts",
      ".sh",
    }
  )
  | JSONL_EXTENSIONS
)

_EXCLUDED_STDLIB_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


class CorpusError(ValueError):
  """A corpus could not be found, prepared or read; the message says why."""


# ---------------------------------------------------------------------------
# Corpus: random access to the raw bytes of documents.


class Corpus(Sequence[bytes]):
  """Random-access documents of one split; `corpus[i]` is the raw bytes."""

  def __init__(self, source: Sequence[Any], *, name: str, split: str, text_key: str = "text"):
    self._source = source
    self._text_key = text_key
    self.name = name
    self.split = split
    self._len = len(source)

  def __len__(self) -> int:
    return self._len

  def _record(self, index: int) -> dict[str, Any]:
    i = index.__index__()
    if i < 0:
      i += self._len
    if not 0 <= i < self._len:
      raise IndexError(f"document {index} out of range for {self!r}")
    return self._source[i]

  def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
    return _as_bytes(self._record(index)[self._text_key])

  def doc_name(self, index: int) -> str | None:
    """The document's name (`path` or `path:line`) if the corpus records one."""
    name = self._record(index).get("name")
    return None if name is None else _as_bytes(name).decode("utf-8", "replace")

  def __repr__(self) -> str:
    return f"Corpus(name={self.name!r}, split={self.split!r}, docs={self._len})"


def _as_bytes(value: Any) -> bytes:
  """Normalises what tfds decodes (uint8 array, bytes or str) to bytes."""
  if isinstance(value, np.ndarray):
    if value.dtype == np.uint8:
      return value.tobytes()
    value = value.item()  # scalar string tensors come back as 0-d arrays
  if isinstance(value, str):
    return value.encode("utf-8")
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value)
  raise TypeError(f"document text has unsupported type {type(value).__name__}")


# ---------------------------------------------------------------------------
# Source files and the documents in them.


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """One input file; `name` (relative to the corpus root) keys its documents."""

  path: str
  name: str
  size: int
  mtime_ns: int
  jsonl: bool


def _display_name(path: str) -> str:
  # Keys must be valid UTF-8 for tfds; keep undecodable file names distinct.
  return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _read_error(path: str, err: OSError) -> CorpusError:
  reason = err.strerror or str(err)
  return CorpusError(
    f"cannot read corpus file {path}: {reason}. Fix its permissions or "
    "leave it out of the corpus spec."
  )


def _stat_regular_file(path: str) -> os.stat_result:
  try:
    st = os.stat(path)
  except OSError as err:  # dangling symlink, permission denied on a parent
    raise _read_error(path, err) from err
  if stat.S_ISDIR(st.st_mode):
    raise CorpusError(f"corpus path {path} is a directory where a file was expected")
  if not stat.S_ISREG(st.st_mode):
    # Reading a FIFO or device would block or never end.
    raise CorpusError(
      f"corpus path {path} is not a regular file (FIFO, socket or device); "
      "leave it out of the corpus spec."
    )
  return st


def _walk_text_files(directory: str) -> list[str]:
  """Sorted text files under `directory`, skipping hidden files and dirs."""
  found = []
  for root, dirs, files in os.walk(directory):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for f in sorted(files):
      if not f.startswith(".") and os.path.splitext(f)[1].lower() in TEXT_EXTENSIONS:
        found.append(os.path.join(root, f))
  return found


def _is_within(path: str, directory: str) -> bool:
  return os.path.commonpath([path, directory]) == directory


def resolve_files(specs: Sequence[str], exclude_dir: str | None = None) -> list[str]:
  """Expands paths, directories (recursively) and globs to sorted absolute files.

  Files under `exclude_dir` (the data_dir) are left out, so that a corpus
  spec like "files:." does not pick up its own prepared dataset.
  """
  files: list[str] = []
  for spec in specs:
    spec = spec.strip()
    if not spec:
      continue
    expanded = os.path.expanduser(spec)
    if glob.has_magic(expanded):
      matches = sorted(glob.glob(expanded, recursive=True))
    else:
      matches = [expanded] if os.path.lexists(expanded) else []
    if not matches:
      raise CorpusError(
        f"corpus path or glob {spec!r} matches nothing (working directory: {os.getcwd()})."
      )
    for match in matches:
      if os.path.isdir(match):
        inside = _walk_text_files(match)
        if not inside:
          raise CorpusError(
            f"directory {match} (from {spec!r}) contains no text files; "
            f"files are read when their extension is one of "
            f"{', '.join(sorted(TEXT_EXTENSIONS))}, or name files "
            "explicitly or with a glob."
          )
        files.extend(inside)
      else:
        files.append(match)
  resolved = {os.path.abspath(f) for f in files}
  if exclude_dir is not None:
    exclude_dir = os.path.realpath(exclude_dir)
    resolved = {f for f in resolved if not _is_within(os.path.realpath(f), exclude_dir)}
  if not resolved:
    raise CorpusError(f"corpus spec {list(specs)!r} names no files (outside the data_dir).")
  return sorted(resolved)


def source_files(paths: Sequence[str], root: str | None = None) -> tuple[SourceFile, ...]:
  """Stats `paths` (absolute, regular files) into `SourceFile`s named relative to `root`."""
  if root is None:
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
  sources = []
  for path in paths:
    st = _stat_regular_file(path)
    sources.append(
      SourceFile(
        path=path,
        name=_display_name(os.path.relpath(path, root)),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        jsonl=os.path.splitext(path)[1].lower() in JSONL_EXTENSIONS,
      )
    )
  return tuple(sources)


def stdlib_files(stdlib_dir: str | None = None) -> list[str]:
  """Sorted `*.py` files of the standard library, without installed packages."""
  root = stdlib_dir or sysconfig.get_paths()["stdlib"]
  found = []
  for d, dirs, files in os.walk(root):
    dirs[:] = sorted(x for x in dirs if x not in _EXCLUDED_STDLIB_DIRS)
    found.extend(os.path.join(d, f) for f in sorted(files) if f.endswith(".py"))
  return found


def _jsonl_documents(source: SourceFile, text_key: str) -> Iterator[tuple[str, bytes]]:
  """(key, bytes) per non-blank line of a JSON-lines file."""
  try:
    f = open(source.path, "rb")
  except OSError as err:
    raise _read_error(source.path, err) from err
  with f:
    lineno = 0
    try:
      for lineno, line in enumerate(f, start=1):
        if not line.strip():
          continue
        text = _jsonl_text(source.path, lineno, line, text_key)
        if text:
          # Lone surrogates (from "\ud800" escapes) cannot be UTF-8.
          yield f"{source.name}:{lineno}", text.encode("utf-8", "replace")
    except OSError as err:
      raise _read_error(f"{source.path} (line {lineno + 1})", err) from err


def _jsonl_text(path: str, lineno: int, line: bytes, text_key: str) -> str:
  where = f"{path}, line {lineno}"
  try:
    record = json.loads(line)
  except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
    raise CorpusError(f"invalid JSON in {where}: {err}. Fix or remove the line.") from err
  if not isinstance(record, dict):
    raise CorpusError(
      f"{where} is a JSON {type(record).__name__}, expected an object with a {text_key!r} field."
    )
  if text_key not in record:
    raise CorpusError(
      f"{where} has no field {text_key!r} (fields: "
      f"{', '.join(sorted(record)) or 'none'}); set --config.data.text_key=<field> "
      "(text_key=... in load_corpus) to read another field."
    )
  text = record[text_key]
  if not isinstance(text, str):
    raise CorpusError(
      f"field {text_key!r} in {where} is a {type(text).__name__}, expected a string."
    )
  return text


def _read_whole(path: str) -> bytes:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as err:
    raise _read_error(path, err) from err


def iter_documents(
  sources: Sequence[SourceFile],
  text_key: str,
  want: Callable[[str], bool] = lambda key: True,
) -> Iterator[tuple[str, bytes]]:
  """(key, bytes) of every non-empty document whose key passes `want`.

  Whole files are read only when wanted; JSON-lines files are always parsed.
  """
  for source in sources:
    if source.jsonl:
      for key, data in _jsonl_documents(source, text_key):
        if want(key):
          yield key, data
    elif source.size > 0 and want(source.name):
      data = _read_whole(source.path)
      if data:
        yield source.name, data


def document_keys(sources: Sequence[SourceFile], text_key: str) -> Iterator[str]:
  """Keys of all non-empty documents; checks every file can be read."""
  for source in sources:
    if source.jsonl:
      yield from (key for key, _ in _jsonl_documents(source, text_key))
    elif source.size > 0:
      try:
        open(source.path, "rb").close()
      except OSError as err:
        raise _read_error(source.path, err) from err
      yield source.name


# ---------------------------------------------------------------------------
# Deterministic train/validation split.


def unit_hash(key: str) -> float:
  """A stable hash of `key` in [0, 1) (unlike `hash`, same in every process)."""
  digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
  return int.from_bytes(digest, "big") / 2.0**64


class _TooFewDocuments(CorpusError):
  def __init__(self, message: str, count: int):
    super().__init__(message)
    self.count = count


def validation_keys(keys: Iterable[str], val_fraction: float) -> frozenset[str]:
  """Keys that go to validation: those hashing below `val_fraction`.

  At least one key goes to validation (the lowest hash) and at least one
  stays in train. Streams over `keys`, keeping only the validation ones.
  """
  count = 0
  chosen: list[tuple[float, str]] = []
  lowest = (2.0, "")
  for key in keys:
    count += 1
    h = unit_hash(key)
    if h < val_fraction:
      chosen.append((h, key))
    lowest = min(lowest, (h, key))
  if count < 2:
    raise _TooFewDocuments(
      f"a corpus needs at least 2 non-empty documents (one for validation), found {count}.", count
    )
  if not chosen:
    chosen = [lowest]
  if len(chosen) == count:
    chosen.remove(max(chosen))
  return frozenset(key for _, key in chosen)


def _check_val_fraction(val_fraction: float) -> None:
  if not 0.0 <= val_fraction < 1.0:
    raise CorpusError(f"val_fraction must be in [0, 1), got {val_fraction}.")


# ---------------------------------------------------------------------------
# tfds builders for the stdlib and local files.


@dataclasses.dataclass(eq=False)
class FilesConfig(tfds.core.BuilderConfig):
  """Which files make the corpus; the config name is a hash of all of it."""

  sources: tuple[SourceFile, ...] = ()
  text_key: str = "text"
  val_fraction: float = DEFAULT_VAL_FRACTION


def config_name(
  prefix: str, sources: Sequence[SourceFile], text_key: str, val_fraction: float
) -> str:
  """`prefix` + a hash of paths, sizes and mtimes: changed files get a new dataset."""
  h = hashlib.sha256()
  h.update(json.dumps([text_key, repr(float(val_fraction))]).encode())
  for s in sources:
    h.update(json.dumps([s.path, s.size, s.mtime_ns, s.jsonl]).encode("utf-8", "surrogatepass"))
  return f"{prefix}{h.hexdigest()[:16]}"


class _TextFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes the documents of `FilesConfig.sources` as `{text: uint8[], name}`."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Raw document bytes, split by a hash of the document name."}

  # Not a tfds-shipped dataset: no checksums file to look up next to the code
  # (and tfds' lookup imports `importlib_resources`, which py>=3.9 lacks).
  code_path = None
  _validation: frozenset[str] | None = None

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=tfds.features.FeaturesDict(
        {
          # uint8 rather than Text so that invalid UTF-8 survives exactly; stored
          # as one bytes value (the default writes one int64 per byte).
          "text": tfds.features.Tensor(shape=(None,), dtype=np.uint8, encoding="bytes"),
          "name": tfds.features.Text(),
        }
      ),
    )

  def plan(self) -> None:
    """Lists and checks the documents and picks the validation ones."""
    config: FilesConfig = self.builder_config
    keys = document_keys(config.sources, config.text_key)
    try:
      self._validation = validation_keys(keys, config.val_fraction)
    except _TooFewDocuments as err:
      if err.count:
        raise CorpusError(f"corpus {config.description!r}: {err}") from None
      raise CorpusError(
        f"corpus {config.description!r} is empty: its {len(config.sources)} "
        "file(s) hold no non-empty document."
      ) from None

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    if self._validation is None:
      self.plan()
    return {
      "train": self._generate_examples(validation=False),
      "validation": self._generate_examples(validation=True),
    }

  def _generate_examples(self, validation: bool):
    config: FilesConfig = self.builder_config
    val = self._validation
    want = lambda key: (key in val) == validation  # noqa: E731
    for key, data in iter_documents(config.sources, config.text_key, want):
      yield key, {"text": np.frombuffer(data, np.uint8), "name": key}

  # tfds prints these with termcolor to stdout; a single log line replaces them.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass


class Stdlib(_TextFilesBuilder, skip_registration=True):
  """The `*.py` files of this Python's standard library, one document per file."""

  name = "stdlib"


class LocalFiles(_TextFilesBuilder, skip_registration=True):
  """Local text files (one document each) and JSON-lines files (one per line)."""

  name = "local_files"


class _DropTfdsChatter(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or "tensorflow_datasets" not in record.pathname


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
  """Silences tfds progress bars and info/warning chatter, then restores them."""
  from tensorflow_datasets.core.utils import tqdm_utils

  was_active = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)
  chatter = _DropTfdsChatter()
  logger = logging.getLogger("absl")
  logger.addFilter(chatter)
  try:
    yield
  finally:
    logger.removeFilter(chatter)
    tfds.display_progress_bar(was_active)


def _build(
  builder_cls: type[_TextFilesBuilder], config: FilesConfig, data_dir: str, display: str
) -> _TextFilesBuilder:
  """Returns a prepared builder, preparing it first if needed."""
  with _quiet_tfds():
    builder = builder_cls(config=config, data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
      return builder
  builder.plan()  # Fails on bad input before tfds creates any directory.
  start = time.perf_counter()
  absl_logging.info(
    "jaxtok: preparing corpus %s (%d files) in %s ...",
    display,
    len(config.sources),
    builder.data_dir,
  )
  try:
    with _quiet_tfds():
      builder.download_and_prepare()
  except Exception:
    # Another process (another host) may have prepared it at the same time.
    with _quiet_tfds():
      builder = builder_cls(config=config, data_dir=data_dir, file_format="array_record")
      if not builder.is_prepared():
        raise
  absl_logging.info(
    "jaxtok: prepared corpus %s in %.1fs: %s",
    display,
    time.perf_counter() - start,
    {k: v.num_examples for k, v in builder.info.splits.items()},
  )
  return builder


def stdlib_builder(data_dir: str, val_fraction: float = DEFAULT_VAL_FRACTION) -> Stdlib:
  """The prepared stdlib builder (prepared on first use)."""
  stdlib_dir = sysconfig.get_paths()["stdlib"]
  sources = source_files(stdlib_files(stdlib_dir), root=stdlib_dir)
  # Python version in the name: each interpreter gets its own dataset.
  prefix = "py{}_{}_{}-".format(*sys.version_info[:3])
  config = FilesConfig(
    name=config_name(prefix, sources, "text", val_fraction),
    description=f"*.py files under {stdlib_dir}",
    sources=sources,
    val_fraction=val_fraction,
  )
  return _build(Stdlib, config, data_dir, "stdlib")


def files_builder(
  specs: Sequence[str],
  data_dir: str,
  *,
  text_key: str = "text",
  val_fraction: float = DEFAULT_VAL_FRACTION,
) -> LocalFiles:
  """The prepared builder for local files (prepared on first use, or on change)."""
  sources = source_files(resolve_files(specs, exclude_dir=data_dir))
  config = FilesConfig(
    name=config_name("h", sources, text_key, val_fraction),
    description="files: " + ",".join(specs),
    sources=sources,
    text_key=text_key,
    val_fraction=val_fraction,
  )
  return _build(LocalFiles, config, data_dir, "files:" + ",".join(specs))


# ---------------------------------------------------------------------------
# Registered tfds datasets.


def _prepare_hint(name: str) -> str:
  return (
    f"Prepare it once in array_record format with `tfds build {name} "
    f"--file_format=array_record --data_dir=DATA_DIR` or, in Python, "
    f'`tfds.builder({name!r}, data_dir=DATA_DIR, file_format="array_record")'
    ".download_and_prepare()`, then pass data_dir=DATA_DIR (or set "
    f"${DATA_DIR_ENV})."
  )


def tfds_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The builder of a prepared array_record tfds dataset, or a CorpusError."""
  try:
    with _quiet_tfds():
      builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as err:
    raise CorpusError(
      f"unknown corpus {name!r}: it is not 'stdlib', not a 'files:<path-or-glob>' "
      "spec or an existing path, and tfds finds no dataset of that name "
      f"({str(err).splitlines()[0]}). If it is a tfds dataset, check the "
      f"spelling. {_prepare_hint(name)}"
    ) from err
  except Exception as err:  # bad config/version names and such
    raise CorpusError(f"cannot load tfds dataset {name!r}: {err}") from err
  with _quiet_tfds():
    prepared = builder.is_prepared()
  if not prepared:
    raise CorpusError(f"tfds dataset {name!r} is not prepared in {data_dir}. {_prepare_hint(name)}")
  file_format = builder.info.file_format
  if file_format is not None and file_format.value != "array_record":
    raise CorpusError(
      f"tfds dataset {name!r} in {data_dir} is stored as {file_format.value}; "
      "random access without TensorFlow needs array_record. Convert it with "
      f"`tfds convert_format --root_data_dir={data_dir} --out_file_format=array_record` "
      f"or rebuild it. {_prepare_hint(name)}"
    )
  return builder


# ---------------------------------------------------------------------------
# Entry point.


def default_data_dir() -> str:
  """`$JAXTOK_DATA_DIR`, else `~/.cache/jaxtok/tfds`."""
  return os.environ.get(DATA_DIR_ENV) or os.path.expanduser("~/.cache/jaxtok/tfds")


def _is_local_spec(name: str) -> bool:
  """A bare name is read as local files only if it plainly looks like a path."""
  expanded = os.path.expanduser(name)
  if glob.has_magic(expanded):
    return bool(glob.glob(expanded, recursive=True))
  looks_like_path = os.sep in name or name.startswith((".", "~")) or "." in os.path.basename(name)
  return looks_like_path and os.path.lexists(expanded)


def _resolve_split(builder: tfds.core.DatasetBuilder, split: str, display: str) -> str:
  splits = builder.info.splits
  if split in splits:
    return split
  if split == "validation" and "test" in splits:
    return "test"
  base = split.split("[", 1)[0]
  if base in splits:  # tfds slicing such as "train[:10%]"
    return split
  raise CorpusError(
    f"corpus {display!r} has no split {split!r}; it has {', '.join(sorted(splits))}."
  )


def open_split(
  builder: tfds.core.DatasetBuilder, split: str, *, display: str, text_key: str = "text"
) -> Corpus:
  """A `Corpus` over one split of a prepared builder."""
  tfds_split = _resolve_split(builder, split, display)
  features = builder.info.features
  if features is not None and text_key not in features:
    raise CorpusError(
      f"corpus {display!r} has no feature {text_key!r} "
      f"(it has {', '.join(features.keys())}); pass text_key=..."
    )
  try:
    # Decode only the text: faster, and other features may need TensorFlow.
    decoders = (
      {k: tfds.decode.SkipDecoding() for k in features.keys() if k != text_key}
      if features is not None
      else None
    )
    source = builder.as_data_source(split=tfds_split, decoders=decoders or None)
  except Exception as err:
    raise CorpusError(f"cannot open split {split!r} of corpus {display!r}: {err}") from err
  if len(source) == 0:
    raise CorpusError(f"split {split!r} of corpus {display!r} is empty (0 documents).")
  return Corpus(source, name=display, split=split, text_key=text_key)


def load_corpus(
  name: str,
  *,
  split: str,
  data_dir: str | None = None,
  text_key: str = "text",
  val_fraction: float = DEFAULT_VAL_FRACTION,
) -> Corpus:
  """Opens one split of a corpus, preparing it on first use.

  Args:
    name: `"stdlib"`; `"files:<path-or-glob>[,<path-or-glob>...]"` (a bare
      path or glob that exists works too); or a tfds dataset name such as
      `"lm1b"` or `"wiki40b/en"` prepared in array_record format in `data_dir`.
    split: `"train"` or `"validation"`. A tfds dataset with only train/test
      serves `"validation"` from `"test"`; tfds slices (`"train[:1%]"`) work.
    data_dir: where prepared datasets live; defaults to `$JAXTOK_DATA_DIR`
      or `~/.cache/jaxtok/tfds`.
    text_key: the text feature of a tfds dataset, or the field of JSON lines.
    val_fraction: share of stdlib/local documents held out for validation
      (at least one document); part of the dataset's identity.
  """
  _check_val_fraction(val_fraction)
  data_dir = os.path.expanduser(data_dir or default_data_dir())
  if name == "stdlib":
    builder = stdlib_builder(data_dir, val_fraction)
    return open_split(builder, split, display=name)
  if name.startswith("files:") or _is_local_spec(name):
    specs = name.removeprefix("files:").split(",")
    builder = files_builder(specs, data_dir, text_key=text_key, val_fraction=val_fraction)
    return open_split(builder, split, display=name)
  builder = tfds_builder(name, data_dir)
  return open_split(builder, split, display=name, text_key=text_key)


def corpus_for(data, split: str, name: str | None = None) -> Corpus:
  """One split of the corpus a config's `data` section names (or of corpus `name`, read
  with that section's data_dir, text_key and val_fraction)."""
  return load_corpus(
    name or data.name,
    split=split,
    data_dir=data.data_dir or None,
    text_key=data.text_key,
    val_fraction=data.val_fraction,
  )
