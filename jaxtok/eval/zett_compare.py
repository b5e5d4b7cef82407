"""The ZeTT comparison: one base LM, many unseen tokenizers, every embedding init.

For each target tokenizer the base LM gets input/output embeddings for the
target vocabulary from each method (hypernetwork, FVT, FOCUS-style, lexical
copy, random) and is scored, with no training of the LM, in bits per byte on
held-out text; the base LM with its own tokenizer on the same text is the
reference. Results go to results.json and results.md in the workdir.

Target specs (config.compare.targets.<name>.tokenizer):
  "bpe:N" | "unigram:N" | "wordpiece:N"  trained on `train_text`
  "gguf:<name>"                           a llama.cpp vocabulary (gpt-2, llama-bpe, qwen2, ...)
  "<path>"                                any tokenizer.json / .model / .gguf
Text specs (`train_text`, `eval_text`):
  a corpus name for `load_corpus` ("stdlib", "files:...", a tfds name),
  or "deb:<package>[:<glob>]" (a Debian text package; held out by hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from typing import Any

from jaxtok.data import corpora
from jaxtok.eval import transfer as transfer_eval
from jaxtok.tokenizers import embedding_init, sources
from jaxtok.tokenizers.byte_view import ByteTokenizer, sidecar_path
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.tokenizers.targets import KINDS, train_tokenizer
from jaxtok.train.metrics import markdown_table


class Unavailable(RuntimeError):
  """A target or text source that cannot be had here (offline, package missing)."""


def _held_out(doc: bytes, fraction: float = 0.1) -> bool:
  h = hashlib.blake2b(doc[:4096], digest_size=8).digest()
  return int.from_bytes(h, "little") / 2**64 < fraction


def text_source(spec: str, split: str, config, *, max_docs: int, doc_bytes: int) -> list[bytes]:
  """Up to `max_docs` documents (each cut to `doc_bytes`) of one split of a text spec."""
  fetch = bool(config.compare.get("fetch", True)) if "compare" in config else True
  if spec.startswith("deb:"):
    pkg, _, pattern = spec[4:].partition(":")
    docs = sources.debian_texts(pkg, pattern or "**/*", fetch=fetch)
    if docs is None:
      raise Unavailable(sources.last_error.get(f"deb:{pkg}", f"Debian package {pkg} unavailable"))
    docs = [x for x in docs if _held_out(x) == (split == "validation")]
  else:
    d = config.data
    corpus = corpora.corpus_for(d, split, spec)
    docs = [corpus[i] for i in range(min(len(corpus), max_docs))]
  docs = [x[:doc_bytes] for x in docs if x.strip()][:max_docs]
  if not docs:
    raise Unavailable(f"text source {spec!r} has no {split} documents")
  return docs


def _save_atomic(tok: ByteTokenizer, path: str) -> None:
  """Saves into a temporary folder, then moves the sidecar and (last) the tokenizer in place."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
    tmp_path = os.path.join(tmp, os.path.basename(path))
    tok.save(tmp_path)
    os.replace(sidecar_path(tmp_path), sidecar_path(path))
    os.replace(tmp_path, path)


def make_target(spec: str, config, train_text: str | None = None) -> ByteTokenizer:
  """The target tokenizer of a spec (trained ones are cached by spec and text).

  `config` (a ZeTT config) names the text that "bpe:N"-style targets are trained on; without
  one, only files and "gguf:<name>" vocabularies (fetched when absent) can be made.
  """
  kind, _, arg = spec.partition(":")
  if kind in KINDS and config is None:
    raise ValueError(
      f"target {spec!r} is trained on text: pass --hypernet (its config names the text) "
      "or a tokenizer file"
    )
  if kind in KINDS:
    source = train_text or config.data.name
    c = config.compare if "compare" in config else None
    n_docs = c.target_docs if c is not None else 200
    key = hashlib.blake2b(f"{spec}|{source}|{n_docs}".encode(), digest_size=8).hexdigest()
    path = os.path.join(sources.cache_dir(), "zett_targets", f"{kind}{arg}-{key}.json")
    if not os.path.exists(path):
      docs = text_source(source, "train", config, max_docs=n_docs, doc_bytes=1 << 20)
      tok = ByteTokenizer(train_tokenizer(kind, docs, int(arg)), name=f"{spec}@{source}")
      _save_atomic(tok, path)
    return load_tokenizer(path)
  if kind == "gguf":
    if config is None:
      fetch = True  # asked for by name on the command line
    else:
      fetch = bool(config.compare.get("fetch", True)) if "compare" in config else False
    path = sources.llama_cpp_vocab(arg, fetch=fetch)
    if path is None:
      raise Unavailable(sources.last_error.get(f"vocab:{arg}", f"vocab {arg} unavailable"))
    return load_tokenizer(path)
  return load_tokenizer(spec)


def run(config, workdir: str) -> dict[str, Any]:
  """Runs the comparison of `config` (training the base LM and hypernetwork if needed)."""
  from jaxtok.train import zett

  os.makedirs(workdir, exist_ok=True)
  c = config.compare
  with config.unlocked():
    config.base.workdir = config.base.workdir or os.path.join(os.path.abspath(workdir), "base")
  base, base_tok = zett.load_base(config)
  hyper_dir = os.path.expanduser(c.hypernet_workdir or os.path.join(workdir, "hypernet"))
  if not os.path.exists(os.path.join(hyper_dir, "results.json")):
    print(f"training the hypernetwork in {hyper_dir}")
    zett.train(config, hyper_dir)
  hypernet, _ = zett.restore_hypernet(hyper_dir, base)
  emb = embedding_init.BaseEmbeddings(base_tok, *zett.base_tables(base))
  graphdef, params = zett.nnx.split(base, zett.nnx.Param)

  def bpb(tables, batches):
    return transfer_eval.bits_per_byte(
      graphdef, transfer_eval.with_embeddings(params, *tables), batches
    )["bpb"]

  rows, skipped = [], {}
  eval_cache: dict[str, list[bytes]] = {}
  for name in sorted(c.targets):
    t = c.targets[name]
    t0 = time.perf_counter()
    try:
      tok = make_target(t.tokenizer, config, t.get("train_text") or None)
      eval_text = t.get("eval_text") or config.data.name
      if eval_text not in eval_cache:
        eval_cache[eval_text] = text_source(
          eval_text, "validation", config, max_docs=c.eval_docs, doc_bytes=c.doc_bytes
        )
      docs = eval_cache[eval_text]
      focus_text = text_source(
        t.get("train_text") or config.data.name,
        "train",
        config,
        max_docs=c.focus_docs,
        doc_bytes=c.doc_bytes,
      )
    except Unavailable as e:
      skipped[name] = str(e)
      print(f"skipping target {name}: {e}")
      continue
    kw = dict(seq_len=c.seq_len, batch_size=c.batch_size)
    base_batches = transfer_eval.eval_batches(base_tok, docs, **kw)
    batches = transfer_eval.eval_batches(tok, docs, **kw)
    inits = {
      "hypernet": lambda: embedding_init.hypernet_init(tok, emb, hypernet),
      "hypernet+lex": lambda: embedding_init.hypernet_init(tok, emb, hypernet, copy_shared=True),
      "fvt": lambda: embedding_init.fvt_init(tok, emb, hypernet.cfg.max_len),
      "focus": lambda: embedding_init.focus_init(
        tok, emb, focus_text, max_len=hypernet.cfg.max_len
      ),
      "lexical": lambda: embedding_init.lexical_init(tok, emb),
      "random": lambda: embedding_init.random_init(tok, emb),
    }
    row = {
      "target": name,
      "tokenizer": t.tokenizer,
      "eval_text": eval_text,
      "vocab": tok.vocab_size,
      "bytes_per_token": transfer_eval.bytes_per_token(tok, docs),
      "base_bytes_per_token": transfer_eval.bytes_per_token(base_tok, docs),
      "original": bpb((emb.emb_in, emb.emb_out), base_batches),
    }
    for method, init in inits.items():
      row[method] = bpb(init(), batches)
    row["seconds"] = time.perf_counter() - t0
    rows.append(row)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
  dynamic_rows = []
  merges = [int(x) for x in str(c.get("dynamic_merges", "")).split(",") if x.strip()]
  if merges:
    from jaxtok.tokenizers import dynamic

    docs = text_source(
      config.data.name, "validation", config, max_docs=c.eval_docs, doc_bytes=c.doc_bytes
    )
    warm = text_source(
      config.data.name, "train", config, max_docs=c.batch_size, doc_bytes=c.doc_bytes
    )
    dynamic_rows = dynamic.evaluate_dynamic(
      base,
      base_tok,
      hypernet,
      docs,
      merges=[0, *merges],
      batch_docs=c.batch_size,
      warmup_docs=warm,
    )
  results = {
    "base": config.base.kind if config.base.kind != "gguf" else config.base.gguf,
    "hypernet_workdir": hyper_dir,
    "eval_docs": c.eval_docs,
    "doc_bytes": c.doc_bytes,
    "rows": rows,
    "skipped": skipped,
    "dynamic": dynamic_rows,
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown(results) + "\n")
  return results


def markdown(results: dict[str, Any]) -> str:
  """The comparison table: validation bits per byte (lower is better) per target and init."""
  cols = ["target", "vocab", "bytes_per_token", "original", "hypernet", "hypernet+lex", "fvt"]
  cols += ["focus"]
  cols += ["lexical", "random"]
  table = markdown_table([{k: r[k] for k in cols} for r in results["rows"]])
  notes = [f"- skipped {k}: {v}" for k, v in results["skipped"].items()]
  head = (
    f"Validation bits/byte of the base LM ({results['base']}) under each target tokenizer "
    "(no LM training; `original` = the base tokenizer on the same text)."
  )
  out = [head, "", table, *([""] + notes if notes else [])]
  if results.get("dynamic"):
    keys = ["merges", "mode", "tokens", "length_reduction", "bpb", "bpb_change"]
    out += [
      "",
      "Dynamic tokenization (batch-level BPE merges of base tokens, hypernetwork embeddings). "
      "`in_batch` learns the merges on the scored batch itself (optimistic: the vocabulary "
      "depends on the text); `previous_batch` uses the merges of the preceding batch.",
      "",
      markdown_table([{k: r[k] for k in keys} for r in results["dynamic"]]),
    ]
  return "\n".join(out)
