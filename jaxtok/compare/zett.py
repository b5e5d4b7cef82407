"""The ZeTT comparison: one base LM, many unseen tokenizers, every embedding init.

For each target tokenizer the base LM gets input/output embeddings for the
target vocabulary from each method (hypernetwork, FVT, FOCUS-style, lexical
copy, random) and is scored, with no training of the LM, in bits per byte on
held-out text; the base LM with its own tokenizer on the same text is the
reference. Results go to results.json and results.md in the workdir.

Target specs (config.compare.targets.<name>.tokenizer) and text specs
(`train_text`, `eval_text`) are those of `jaxtok.tokenizers.targets`.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import numpy as np
from flax import nnx

from jaxtok import paths
from jaxtok.eval import dynamic as dynamic_eval
from jaxtok.eval import tokenizer_bpb
from jaxtok.models import hypernet as hypernet_lib
from jaxtok.models.transfer import with_embeddings
from jaxtok.tokenizers import decompose, embedding_init
from jaxtok.tokenizers.targets import Unavailable, make_target, text_source
from jaxtok.train import trainer, zett
from jaxtok.train.metrics import markdown_table, read_rows


def run(config, workdir: str) -> dict[str, Any]:
  """Runs the comparison of `config` (training the base LM and hypernetwork if needed)."""
  workdir = paths.check(workdir)
  paths.makedirs(workdir)
  c = config.compare
  config = copy.deepcopy(config)
  with config.unlocked():
    config.base.workdir = config.base.workdir or paths.join(paths.absolute(workdir), "base")
  hyper_dir = paths.expand(c.hypernet_workdir or paths.join(workdir, "hypernet"))
  if not paths.exists(paths.join(hyper_dir, "results.json")):
    print(f"training the hypernetwork in {hyper_dir}")
    trainer.train(config, hyper_dir)
  base, base_tok = zett.load_base(config)
  hypernet, _ = zett.restore_hypernet(hyper_dir, base)
  emb = embedding_init.BaseEmbeddings(base_tok, *base.embedding_tables())
  predict = hypernet_lib.predictor(hypernet, emb.emb_in, emb.emb_out)
  max_len = hypernet.cfg.max_len
  graphdef, params = nnx.split(base, nnx.Param)

  def bpb(tables, batches):
    return tokenizer_bpb.bits_per_byte(graphdef, with_embeddings(params, *tables), batches)["bpb"]

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
    base_batches = tokenizer_bpb.eval_batches(base_tok, docs, **kw)
    batches = tokenizer_bpb.eval_batches(tok, docs, **kw)
    own = hypernet.cfg.copy_shared  # the hypernetwork's own rule for shared tokens
    inits = {
      "hypernet": lambda: embedding_init.hypernet_init(tok, emb, predict, max_len, copy_shared=own),
      # a hypernetwork that predicts every token, with the shared ones copied afterwards
      **(
        {}
        if own
        else {
          "hypernet+lex": lambda: embedding_init.hypernet_init(
            tok, emb, predict, max_len, copy_shared=True
          )
        }
      ),
      "fvt": lambda: embedding_init.fvt_init(tok, emb, max_len),
      "focus": lambda: embedding_init.focus_init(tok, emb, focus_text, max_len=max_len),
      "lexical": lambda: embedding_init.lexical_init(tok, emb),
      "random": lambda: embedding_init.random_init(tok, emb),
    }
    row = {
      "target": name,
      "tokenizer": t.tokenizer,
      "eval_text": eval_text,
      "vocab": tok.vocab_size,
      "bytes_per_token": tokenizer_bpb.bytes_per_token(tok, docs),
      "base_bytes_per_token": tokenizer_bpb.bytes_per_token(base_tok, docs),
      "shared_use": shared_use(tok, base_tok, docs),
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
    docs = text_source(
      config.data.name, "validation", config, max_docs=c.eval_docs, doc_bytes=c.doc_bytes
    )
    warm = text_source(
      config.data.name, "train", config, max_docs=c.batch_size, doc_bytes=c.doc_bytes
    )
    dynamic_rows = dynamic_eval.evaluate_dynamic(
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
  paths.write_atomic(paths.join(workdir, "results.json"), json.dumps(results, indent=2))
  paths.write_atomic(paths.join(workdir, "results.md"), markdown(results) + "\n")
  return results


def shared_use(tok, base_tok, docs) -> float:
  """The share of `tok`'s tokens on `docs` that are base tokens (same bytes): what FVT and a
  copy already get exactly right, and a hypernetwork that predicts them can only spoil."""
  ids = np.concatenate(tok.encode_batch(list(docs)))
  return float((decompose.shared_ids(tok, base_tok)[ids] >= 0).mean())


def markdown(results: dict[str, Any]) -> str:
  """The comparison table: validation bits per byte (lower is better) per target and init."""
  cols = ["target", "vocab", "bytes_per_token", "shared_use", "original", "hypernet"]
  cols += ["hypernet+lex", "fvt", "focus", "lexical", "random"]
  table = markdown_table([{k: r[k] for k in cols if k in r} for r in results["rows"]])
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


# --- the learning curve of a hypernetwork run -------------------------------------------------


def curve(hypernet_workdir: str) -> list[dict[str, Any]]:
  """Per evaluation step of a hypernetwork run (config.train.eval_every) and per evaluation
  tokenizer: the bits per byte with hypernetwork and with FVT embeddings, from metrics.jsonl.
  Step 0 is FVT in the residual form (the hypernetwork starts as FVT)."""
  rows: dict[int, dict[str, float]] = {}
  for m in read_rows(paths.expand(hypernet_workdir)):
    evals = {k[len("eval/") :]: v for k, v in m.items() if k.startswith("eval/")}
    if evals:
      rows.setdefault(m["step"], {}).update(evals)  # a resumed run's later rows win
  out = []
  for step in sorted(rows):
    for key, bpb in sorted(rows[step].items()):
      if key.startswith("bpb_"):
        name = key[len("bpb_") :]
        fvt = rows[step].get(f"fvt_bpb_{name}", float("nan"))
        out.append({"step": step, "target": name, "hypernet": bpb, "fvt": fvt, "gain": fvt - bpb})
  return out


def curve_markdown(rows: list[dict[str, Any]]) -> str:
  return markdown_table(rows) if rows else "(no evaluations: set config.train.eval_every)"
