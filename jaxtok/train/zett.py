"""Training the ZeTT hypernetwork against a frozen base LM.

Each step (after an identity warm-up stage):
  1. the next rows of raw text (bytes, packed like the byte LM's batches) are
     pushed into the tokenizer sampler's window, and a fresh unigram tokenizer
     is sampled from it;
  2. the text is tokenized with it; the step's vocabulary is the tokens in the
     batch plus random negatives (a fixed number, so shapes never change);
  3. the hypernetwork predicts input/output embeddings of those tokens from
     their decompositions into base tokens; the frozen base LM runs on the
     predicted input embeddings and its softmax over the step vocabulary
     scores the next tokens;
  4. loss = LM cross-entropy + aux_weight x L2 to the base embeddings of
     tokens that exist in the base vocabulary (relative to the table's variance;
     with `model.copy_shared` those tokens copy the base embeddings instead).
The identity stage before it (its own phase: its own optimizer and schedule)
trains the hypernetwork to reproduce base embeddings (MIMICK-style). A base
token read as itself is trivial in the residual form (its FVT already is its
embedding, so loss and gradient are 0) and copied with `copy_shared`, so the
identity batches read base tokens split at a random byte into other base
tokens (with `copy_shared=False`, half of them as themselves): the
hypernetwork learns to predict a token's embedding from its parts, which is
what it must do for every token a base vocabulary lacks.

This is a task of the common trainer (`config.model.name="hypernet"`; the
model section holds the hypernetwork's fields): the trainable state is the
hypernetwork, the base LM is frozen state passed to the same pure jitted
steps; the identity stage and the transfer stage are two phases; optimizer,
mesh, metrics, checkpoints, resume and SIGTERM are the trainer's. The
host-side batch producer is checkpointable: its state is the step and the text
positions of the sampler's window, so a resumed run rebuilds the same window
and samples the same tokenizers.
"""

from __future__ import annotations

import collections
import hashlib
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtok import hub, paths
from jaxtok import sharding as shd
from jaxtok.configlib import require
from jaxtok.data import codec, corpora
from jaxtok.eval import tokenizer_bpb
from jaxtok.models import hf, transfer
from jaxtok.models import hypernet as hypernet_lib
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.convert import load_gguf_model
from jaxtok.models.flops import Flops
from jaxtok.models.hypernet import Hypernet, HypernetConfig
from jaxtok.models.losses import foreign_embedding_sums
from jaxtok.models.transformer import DTYPES, Transformer
from jaxtok.tokenizers import decompose, embedding_init, sources
from jaxtok.tokenizers import targets as targets_lib
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.tokenizers.sampler import TokenizerSampler
from jaxtok.train.phases import Phase
from jaxtok.train.task import Task

HYPERNET = nnx.All(nnx.Param, nnx.PathContains("hypernet"))
# Per-step tables of a batch (the step's vocabulary), not split by rows.
VOCAB_KEYS = ("decomp", "copy_ids", "shared_ids", "vocab_valid", "base_ids")


# --- config ---------------------------------------------------------------------------------


def validate_config(config) -> None:
  """The ZeTT fields (the trainer checks the common ones); messages name the field."""
  t, d, s = config.train, config.data, config.sampler

  need = require

  need(config.base.kind in ("jaxtok", "gguf"), "base.kind", "'jaxtok' or 'gguf'")
  need(t.steps > t.identity_steps >= 0, "train.identity_steps", "must be in [0, train.steps)")
  need(t.aux_weight >= 0, "train.aux_weight", "must be >= 0")
  need(t.identity_batch > 0, "train.identity_batch", "must be positive")
  need(t.base_dtype in DTYPES, "train.base_dtype", f"one of {sorted(DTYPES)}")
  need(d.tokens_per_row > 1, "data.tokens_per_row", "must be > 1")
  need(d.vocab_per_step > 3, "data.vocab_per_step", "must be > 3")
  need(s.window >= 1, "sampler.window", "must be >= 1")
  if d.get("mix"):
    need(d.mix_docs > 0 and d.mix_doc_bytes > 0, "data.mix_docs", "and mix_doc_bytes must be > 0")
  HypernetConfig.from_dict(config.model)


def prepare(config, workdir: str) -> None:
  """Resolves, once, what the run needs from data (called by `jaxtok.train.prepare`):

  * `data.mix` (text specs, comma-separated): the training text becomes their train
    documents, interleaved, as one JSON-lines corpus (`data.name`);
  * `eval.tokenizers` ("spec" or "spec@text", comma-separated): each evaluation tokenizer
    is made (trained on `text`, else on `data.name`) and copied into the workdir
    (`eval.tokenizer_files`); its bits/byte are measured on the held-out documents of
    `text` (`eval.tokenizer_texts`).
  """
  d = config.data
  mix = [x.strip() for x in str(d.get("mix", "")).split(",") if x.strip()]
  if mix:
    kw = dict(docs_per_source=d.mix_docs, doc_bytes=d.mix_doc_bytes)
    try:
      d.name = f"files:{targets_lib.mixed_corpus(mix, config, **kw)}"
    except (targets_lib.Unavailable, corpora.CorpusError) as e:
      raise ValueError(f"config.data.mix={d.mix!r}: {e}") from e
  files, texts = {}, {}
  for entry in [s.strip() for s in config.eval.tokenizers.split(",") if s.strip()]:
    spec, _, text = entry.partition("@")
    name = eval_name(spec, text)
    path = paths.join(paths.absolute(workdir), "eval_tokenizers", f"{name}.json")
    if not paths.exists(path):
      targets_lib.save_atomic(targets_lib.make_target(spec, config, text or None), path)
    files[name], texts[name] = path, text
  config.eval.tokenizer_files = files
  config.eval.tokenizer_texts = texts


def eval_name(spec: str, text: str = "") -> str:
  """A metric-safe name for an evaluation tokenizer: "unigram1024", "unigram8192_fortunes-ru"
  (a Debian package's name), else a short hash of the text spec."""
  name = re.sub(r"[^A-Za-z0-9_-]+", "_", spec.replace(":", "")).strip("_")
  if not text:
    return name
  label = (
    text.split(":")[1]
    if text.startswith("deb:")
    else hashlib.blake2b(text.encode(), digest_size=3).hexdigest()
  )
  return f"{name}_{re.sub(r'[^A-Za-z0-9_-]+', '_', label)}"


# --- the base model -------------------------------------------------------------------------


# The document boundary a GGUF base was pretrained with, where its metadata names other
# tokens: SmolLM2 separates documents with <|endoftext|>; its GGUF's bos/eos (<|im_start|>,
# <|im_end|>) mark chat turns, and on raw text they score worse (bits/byte: stdlib 1.027 vs
# 0.993, fortunes 1.981 vs 1.935). Config fields base.bos/eos/pad override these.
GGUF_SPECIALS = {"smollm2": dict.fromkeys(("bos", "eos", "pad"), "<|endoftext|>")}


def load_base(config, *, mesh=None, rules=None) -> tuple[Transformer, ByteTokenizer]:
  """(base LM, its tokenizer at byte level) as config.base describes (a jaxtok workdir, trained
  first by the trainer as a prerequisite, or a GGUF); see `load_base_spec` for `mesh`."""
  b = config.base
  if b.kind == "jaxtok" and not paths.isdir(paths.expand(b.workdir, "config.base.workdir")):
    raise FileNotFoundError(f"config.base.workdir={b.workdir!r} is not a jaxtok workdir")
  spec = b.workdir if b.kind == "jaxtok" else b.gguf
  specials = {k: b.get(k) for k in ("bos", "eos", "pad")}
  model, tok = load_base_spec(spec, mesh=mesh, rules=rules, **specials)
  if model.cfg.vocab_size != tok.vocab_size:
    raise ValueError(
      f"config.base: the model has {model.cfg.vocab_size} embeddings but its tokenizer's byte "
      f"view has {tok.vocab_size} tokens; they must match"
    )
  return model, tok


def load_base_spec(spec: str, *, mesh=None, rules=None, **specials):
  """A base LM from a jaxtok workdir, a GGUF ("smollm2" or a path) or a Hugging Face
  checkpoint ("hf:<hub id or directory>", with its tokenizer.json): the one way every entry
  point (training, comparison, `experiments.transfer --base` or `--hypernet`) opens a base,
  so its bos/eos/pad, and with them what a target's specials copy, never depend on the entry
  point. `specials` (names or ids; empty = default) override the base's own (a workdir's
  sidecar; GGUF_SPECIALS, then the GGUF metadata; the checkpoint's tokenizer).
  With a `mesh`, a workdir's or Hugging Face checkpoint's weights are read straight into
  their shards (`rules`: jaxtok.sharding), so a base larger than one device loads; a GGUF
  is read on the default device. Returns (model, tokenizer)."""
  chosen = {k: v for k, v in specials.items() if v not in (None, "")}
  path = spec if hub.is_spec(spec) else paths.expand(spec, "the base")
  if hub.is_spec(spec):
    with shd.use_rules(shd.current_rules() if rules is None else rules):
      loaded = hf.load(spec, mesh=mesh)
    if loaded.kind != "transformer" or loaded.tokenizer is None:
      raise ValueError(f"--base={spec}: a ZeTT base is a causal LM with its tokenizer.json")
    model, tok = hf.fit_vocab(loaded.model, loaded.tokenizer), loaded.tokenizer
  elif paths.isdir(path):
    model, _ = workdir_lib.restore(path, mesh=mesh, rules=rules)
    return model, load_tokenizer(workdir_lib.tokenizer_path(path), **chosen)
  else:
    model, tok = load_gguf_model(sources.resolve_gguf(spec))
    chosen = {**GGUF_SPECIALS.get(spec, {}), **chosen}
  if chosen:
    tok = ByteTokenizer(tok.hf, name=tok.name, **{**_ids(tok), **chosen})
  return model, tok


def _ids(tok: ByteTokenizer) -> dict[str, int]:
  return {"bos": tok.bos_id, "eos": tok.eos_id, "pad": tok.pad_id}


class ZettModel(nnx.Module):
  """The hypernetwork (trained) next to the base LM (frozen)."""

  def __init__(self, hypernet: Hypernet, base: Transformer):
    self.hypernet = hypernet
    self.base = base

  def predict(self, decomp_NxL, copy_ids_N):
    """Embeddings [N, D] (input, output) of N tokens; those with a copy id (specials, and
    shared tokens with `copy_shared`) copy that base token's."""
    emb_in, emb_out = self.base.embedding_tables()
    emb_in = jax.lax.stop_gradient(emb_in)
    emb_out = None if emb_out is None else jax.lax.stop_gradient(emb_out)
    pred_in, pred_out = self.hypernet(decomp_NxL, emb_in, emb_out)
    copy = (copy_ids_N >= 0)[:, None]
    src = jnp.maximum(copy_ids_N, 0)
    pred_in = jnp.where(copy, emb_in[src].astype(jnp.float32), pred_in)
    if emb_out is None:
      return pred_in, pred_in
    return pred_in, jnp.where(copy, emb_out[src].astype(jnp.float32), pred_out)


def transfer_loss(aux_weight: float):
  """The base LM's loss with predicted embeddings (its CE part as "ce_sum") + aux L2."""

  def loss_fn(model: ZettModel, batch):
    e_in, e_out = model.predict(batch["decomp"], batch["copy_ids"])
    sums = foreign_embedding_sums(model.base, e_in, e_out, batch["vocab_valid"], batch)
    aux = _aux_l2(model, e_in, e_out, batch["shared_ids"])
    ce = sums["loss_sum"]
    return {
      **sums,
      "loss_sum": ce + aux_weight * aux * sums["tokens"],
      "ce_sum": ce,
      "aux_sum": aux * sums["tokens"],
    }

  return loss_fn


def _sq_err(pred, table, ids):
  """Squared distance of `pred` to rows `ids` of an embedding table, relative to the table's
  variance (mean over dimensions): 1 = as far as a typical embedding is from the mean, so
  the weight of a loss built on it does not depend on the base model's embedding scale."""
  table = jax.lax.stop_gradient(table).astype(jnp.float32)
  return jnp.mean((pred - table[ids]) ** 2, -1) / jnp.mean(jnp.var(table, 0))


def _aux_l2(model: ZettModel, e_in, e_out, shared_ids):
  """Relative squared distance to the base embeddings, averaged over the tokens that exist
  in the base vocabulary."""
  emb_in, emb_out = model.base.embedding_tables()
  ok = shared_ids >= 0
  src = jnp.maximum(shared_ids, 0)
  d = _sq_err(e_in, emb_in, src)
  if emb_out is not None:
    d = d + _sq_err(e_out, emb_out, src)
  return jnp.sum(jnp.where(ok, d, 0.0)) / jnp.maximum(ok.sum(), 1)


def identity_batch(
  base: ByteTokenizer, size: int, max_len: int, rng: np.random.Generator, *, with_self: bool
) -> dict[str, np.ndarray]:
  """`size` rows of base tokens to reproduce: with `with_self` the first half decomposed as
  themselves, the rest (tokens of >= 2 bytes) split at a random byte, each side in base
  tokens."""
  content = np.flatnonzero(base.lengths[: base.hf_size] > 0)
  multi = content[base.lengths[content] >= 2]
  n_self = size // 2 if with_self else 0
  n_self = n_self if len(multi) else size
  ids = np.concatenate(
    [
      rng.choice(content, size=n_self, replace=n_self > len(content)),
      rng.choice(multi, size=size - n_self, replace=size - n_self > len(multi)),
    ]
  ).astype(np.int32)
  decomp = np.full((size, max_len), -1, np.int32)
  decomp[:n_self, 0] = ids[:n_self]
  cuts = [int(rng.integers(1, base.lengths[i])) for i in ids[n_self:]]
  halves = [h for i, k in zip(ids[n_self:], cuts) for h in (base.vocab[i][:k], base.vocab[i][k:])]
  parts = base.encode_pieces(halves)
  for r, (left, right) in enumerate(zip(parts[::2], parts[1::2]), start=n_self):
    row = np.concatenate([left, right])[:max_len]
    decomp[r, : len(row)] = row
  return {"decomp": decomp, "base_ids": ids}


def identity_loss(model: ZettModel, batch):
  """Relative squared error (see `_sq_err`) of the predicted embeddings of base tokens."""
  emb_in, emb_out = model.base.embedding_tables()
  pred_in, pred_out = model.hypernet(batch["decomp"], emb_in, emb_out)
  ids = batch["base_ids"]
  err = _sq_err(pred_in, emb_in, ids)
  if emb_out is not None:
    err = err + _sq_err(pred_out, emb_out, ids)
  n = jnp.asarray(ids.shape[0], jnp.float32)
  return {"loss_sum": err.sum(), "tokens": n, "bytes": n}


# --- host-side batches ----------------------------------------------------------------------


def row_pieces(rows: dict[str, np.ndarray]) -> list[list[tuple[bytes, bool, bool]]]:
  """Per row of a byte-codec batch: its document pieces as (bytes, starts doc, ends doc)."""
  out = []
  for ids, seg in zip(rows["inputs"], rows["segment_ids"]):
    pieces = []
    for s in np.unique(seg[seg > 0]):
      p = ids[seg == s]
      content = (p[p >= codec.OFFSET] - codec.OFFSET).astype(np.uint8).tobytes()
      pieces.append((content, bool(p[0] == codec.BOS_ID), bool(p[-1] == codec.EOS_ID)))
    out.append(pieces)
  return out


def tokenize_rows(
  pieces: list[list[tuple[bytes, bool, bool]]], tok: ByteTokenizer, seq_len: int
) -> dict[str, np.ndarray]:
  """Token batch [B, seq_len] of the same text under `tok` (pieces cut where a row is full)."""
  b = len(pieces)
  flat = [p for row in pieces for p in row]
  encoded = iter(tok.encode_batch([p[0] for p in flat]))
  inputs = np.full((b, seq_len), -1, np.int32)
  targets = np.full((b, seq_len), -1, np.int32)
  segments = np.zeros((b, seq_len), np.int32)
  positions = np.zeros((b, seq_len), np.int32)
  for r, row in enumerate(pieces):
    filled = 0
    for s, (_, bos, eos) in enumerate(row, start=1):
      ids = next(encoded)
      seq = np.concatenate([[tok.bos_id]] * bos + [ids] + [[tok.eos_id]] * eos).astype(np.int32)
      take = min(len(seq), seq_len - filled)
      if take <= 0:
        continue
      inputs[r, filled : filled + take] = seq[:take]
      targets[r, filled : filled + take - 1] = seq[1:take]
      if take < len(seq):
        targets[r, filled + take - 1] = seq[take]
      segments[r, filled : filled + take] = s
      positions[r, filled : filled + take] = np.arange(take)
      filled += take
  rows = {"inputs": inputs, "targets": targets, "segment_ids": segments, "positions": positions}
  return tok.with_target_bytes(rows)


def step_vocabulary(
  batch: dict[str, np.ndarray],
  tok: ByteTokenizer,
  base: ByteTokenizer,
  *,
  size: int,
  max_len: int,
  rng: np.random.Generator,
  copy_shared: bool = False,
) -> dict[str, np.ndarray]:
  """Remaps a token batch onto its step vocabulary: batch tokens + random negatives, with
  the base ids that specials (and, with `copy_shared`, tokens the base has) copy."""
  used = [batch["inputs"], batch["targets"], [tok.bos_id, tok.eos_id, tok.pad_id]]
  active = np.unique(np.concatenate([np.ravel(u) for u in used]))
  active = active[active >= 0]
  if len(active) > size:
    raise ValueError(
      f"config.data.vocab_per_step={size} is smaller than the {len(active)} distinct tokens of "
      "a batch; raise it (or lower data.batch_size / data.tokens_per_row)"
    )
  pool = np.setdiff1d(np.flatnonzero(tok.lengths > 0), active)
  negatives = rng.choice(pool, size=min(size - len(active), len(pool)), replace=False)
  vocab = np.concatenate([active, np.sort(negatives)]).astype(np.int32)
  lut = np.full(tok.vocab_size, -1, np.int32)
  lut[vocab] = np.arange(len(vocab), dtype=np.int32)
  pad = size - len(vocab)
  copies = decompose.special_copies(tok, base)[vocab]
  shared = np.where(copies >= 0, -1, decompose.shared_ids(tok, base)[vocab])
  if copy_shared:  # tokens the base has keep its embeddings: no prediction, no aux loss
    copies, shared = np.where(shared >= 0, shared, copies), np.full_like(shared, -1)
  decomp = decompose.decompose_bytes([tok.vocab[i] for i in vocab], base, max_len)
  decomp[copies >= 0] = -1
  decomp[copies >= 0, 0] = copies[copies >= 0]

  def padded(a, fill):
    return np.concatenate([a, np.full((pad, *a.shape[1:]), fill, a.dtype)])

  remap = lambda x: np.where(x >= 0, lut[np.maximum(x, 0)], -1).astype(np.int32)
  return {
    **batch,
    "inputs": remap(batch["inputs"]),
    "targets": remap(batch["targets"]),
    "decomp": padded(decomp, -1),
    "copy_ids": padded(copies, -1),
    "shared_ids": padded(shared, -1),
    "vocab_valid": np.arange(size) < len(vocab),
  }


class ZettBatches:
  """The hypernetwork's training batches, step by step; checkpointable like PackedBatches.

  State = the step and the text-iterator positions before each batch in the
  sampler's window: restoring replays those batches into the window, so the
  resumed run samples exactly the tokenizers the uninterrupted run would.
  """

  def __init__(self, config, base_tok: ByteTokenizer, text_it):
    self.config = config
    self.base = base_tok
    self.text = text_it
    s = config.sampler
    self.sampler = TokenizerSampler(
      min_vocab=s.min_vocab,
      max_vocab=s.max_vocab,
      max_piece_bytes=s.max_piece_bytes,
      noise_std=s.noise_std,
      window=s.window,
      em_steps=s.em_steps,
    )
    self._window: collections.deque = collections.deque(maxlen=s.window)
    self._step = 0

  def __iter__(self):
    return self

  def _rng(self) -> np.random.Generator:
    return np.random.default_rng([self.config.train.seed, self._step])

  def _read_text(self):
    before = self.text.get_state()
    pieces = row_pieces(next(self.text))
    self.sampler.add(p[0] for row in pieces for p in row)
    self._window.append(before)
    return pieces

  def __next__(self) -> dict[str, np.ndarray]:
    t, d = self.config.train, self.config.data
    rng = self._rng()
    max_len = self.config.model.max_len
    if self._step < t.identity_steps:
      # A token read as itself is copied with copy_shared: only its parts teach anything.
      with_self = not self.config.model.copy_shared
      batch = identity_batch(self.base, t.identity_batch, max_len, rng, with_self=with_self)
    else:
      pieces = self._read_text()
      tok = self.sampler.sample(rng)
      batch = tokenize_rows(pieces, tok, d.tokens_per_row)
      kw = dict(size=d.vocab_per_step, max_len=max_len, copy_shared=self.config.model.copy_shared)
      batch = step_vocabulary(batch, tok, self.base, rng=rng, **kw)
    self._step += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"step": self._step, "window": list(self._window)}

  def set_state(self, state: dict[str, Any]) -> None:
    self.sampler.clear()
    self._window.clear()
    window = list(state["window"])
    if window:
      self.text.set_state(window[0])
      for _ in window:
        self._read_text()
    self._step = int(state["step"])


# --- evaluation -----------------------------------------------------------------------------


def eval_docs(config, text: str = "") -> list[bytes]:
  """Held-out documents of a text spec (default: the training corpus) for evaluation."""
  e = config.eval
  if text:
    return targets_lib.text_source(
      text, "validation", config, max_docs=e.docs, doc_bytes=e.doc_bytes
    )
  corpus = corpora.corpus_for(config.data, "validation")
  docs = [corpus[i][: e.doc_bytes] for i in range(min(len(corpus), e.docs))]
  return [x for x in docs if x]


class Evaluator:
  """Validation bits per byte of the base LM under fixed tokenizers, with predicted embeddings
  (and, for reference, with FVT embeddings: computed once)."""

  def __init__(self, config, base: Transformer, base_tok: ByteTokenizer, graphdef, targets: dict):
    self.graphdef = graphdef  # of the ZettModel: (hypernet params, frozen base) -> model
    self.base_graphdef, self.base_params = nnx.split(base, nnx.Param)
    self.embeddings = embedding_init.BaseEmbeddings(base_tok, *base.embedding_tables())
    e = config.eval
    texts = e.get("tokenizer_texts") or {}  # (set by `prepare`)
    docs: dict[str, list[bytes]] = {}  # by text spec ("" = the training corpus)
    self.targets = {}
    for name, tok in targets.items():
      text = texts.get(name, "")
      if text not in docs:
        docs[text] = eval_docs(config, text)
      kw = dict(seq_len=e.seq_len, batch_size=e.batch_size)
      self.targets[name] = (tok, tokenizer_bpb.eval_batches(tok, docs[text], **kw))
    self._fvt: dict[str, float] | None = None

  def bpb(self, tables, batches) -> float:
    params = transfer.with_embeddings(self.base_params, *tables)
    return tokenizer_bpb.bits_per_byte(self.base_graphdef, params, batches)["bpb"]

  def __call__(self, params, *frozen) -> dict[str, float]:
    hypernet = nnx.merge(self.graphdef, params, *frozen).hypernet
    e = self.embeddings
    predict = hypernet_lib.predictor(hypernet, e.emb_in, e.emb_out)
    out = {}
    for name, (tok, batches) in self.targets.items():
      cfg = hypernet.cfg
      tables = embedding_init.hypernet_init(
        tok, e, predict, cfg.max_len, copy_shared=cfg.copy_shared
      )
      out[f"bpb_{name}"] = self.bpb(tables, batches)
    if self._fvt is None:
      self._fvt = {
        f"fvt_bpb_{name}": self.bpb(embedding_init.fvt_init(tok, self.embeddings), batches)
        for name, (tok, batches) in self.targets.items()
      }
    return {**out, **self._fvt}


# --- the task -------------------------------------------------------------------------------


def build(hcfg: HypernetConfig, base: Transformer, rngs: nnx.Rngs, base_dtype: str = "float32"):
  """The ZettModel: a hypernetwork fitted to `base`'s (float32) tables, next to `base`
  (cast to `base_dtype`: the frozen base may run in bfloat16)."""
  emb_in, emb_out = base.embedding_tables()
  hypernet = Hypernet(hcfg, emb_in=emb_in, emb_out=emb_out, rngs=rngs)
  if base_dtype != "float32":
    graphdef, state = nnx.split(base)
    base = nnx.merge(graphdef, jax.tree.map(lambda x: x.astype(DTYPES[base_dtype]), state))
  return ZettModel(hypernet, base)


def hypernet_task(config, *, mesh=None, rules=None) -> Task:
  """The ZeTT hypernetwork of `config.model`, trained against the frozen base LM `config.base`
  (read straight onto `mesh`, when given: `load_base_spec`)."""
  validate_config(config)
  t = config.train
  hcfg = HypernetConfig.from_dict(config.model)
  base, base_tok = load_base(config, mesh=mesh, rules=rules)
  build_model = lambda rngs: build(hcfg, base, rngs, t.base_dtype)
  flops = Flops({})  # not counted: the frozen base's forward dominates, per sampled token

  def make_evaluator(graphdef):
    files = config.eval.get("tokenizer_files") or {}
    targets = {name: load_tokenizer(path) for name, path in files.items()}
    return Evaluator(config, base, base_tok, graphdef, targets)

  phases = [
    Phase("identity", t.identity_steps, identity_loss, flops),
    Phase("train", t.steps - t.identity_steps, transfer_loss(t.aux_weight), flops),
  ]
  return Task(
    name="hypernet",
    build_model=build_model,
    loss_fn=phases[-1].loss_fn,
    flops=flops,
    trainable=HYPERNET,
    wrap_batches=lambda text_it: ZettBatches(config, base_tok, text_it),
    replicated_keys=VOCAB_KEYS,
    make_evaluator=make_evaluator,
    phases=phases,
    extra={"base": config.base.kind if config.base.kind != "gguf" else config.base.gguf},
  )


def restore_hypernet(workdir: str, base: Transformer | None = None):
  """(hypernet, its config) from a hypernet-training workdir (the base is loaded if not given)."""
  cfg = workdir_lib.load_config(workdir)
  if base is None:
    base, _ = load_base(cfg)
  model = build(HypernetConfig.from_dict(cfg.model), base, nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, HYPERNET, ...)
  ckpt = workdir_lib.checkpointer(workdir, read_only=True)
  try:
    _, arrays, _ = ckpt.restore({"params": params})
  finally:
    ckpt.close()
  return nnx.merge(graphdef, arrays["params"], rest).hypernet, cfg


# --- moving a model to a new tokenizer ------------------------------------------------------


def transfer_job(*, base: str, hypernet: str, tokenizer: str, out: str, method: str) -> dict:
  """The `experiments.transfer` job: writes `base` (default: the hypernetwork's own base)
  moved to `tokenizer` with embeddings from `method` as a restorable workdir `out`."""
  config = workdir_lib.load_config(hypernet) if hypernet else None
  if base:
    model, base_tok = load_base_spec(base)  # the same specials as the hypernetwork's base
  elif config is not None:
    model, base_tok = load_base(config)
  else:
    raise ValueError("pass --base (a jaxtok workdir or GGUF) or --hypernet (its base is used)")
  hyper = restore_hypernet(hypernet, model)[0] if hypernet and method == "hypernet" else None
  target = targets_lib.make_target(tokenizer, config)
  texts = ()
  if method == "focus":
    if config is None:
      raise ValueError("method 'focus' needs --hypernet (its config names the text to use)")
    texts = targets_lib.text_source(
      config.data.name, "train", config, max_docs=200, doc_bytes=1 << 16
    )
  transfer.transfer_with(method, model, base_tok, target, out, hypernet=hyper, texts=texts)
  return {"out": out, "vocab": target.vocab_size, "method": method, "target": target.name}
