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
     tokens that exist in the base vocabulary.
The identity stage before it trains the hypernetwork to reproduce the base
embeddings from the base tokenizer's own tokens (MIMICK-style).

Steps are the spine's pure jitted steps (`make_train_step`, with the base
model passed as frozen state); checkpoints, metrics and resume are the
spine's machinery. The host-side batch producer is checkpointable: its state
is the step and the text positions of the sampler's window, so a resumed run
rebuilds the same window and samples the same tokenizers.
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from jaxtok.configlib import require
from jaxtok.data import codec, corpora, packing
from jaxtok.eval import transfer as transfer_eval
from jaxtok.models.hypernet import Hypernet, HypernetConfig
from jaxtok.models.transformer import Transformer
from jaxtok.tokenizers import bpe, decompose, embedding_init, sources
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.tokenizers.sampler import TokenizerSampler
from jaxtok.train import checkpoint as ckpt_lib
from jaxtok.train import trainer
from jaxtok.train.losses import LN2, token_ce_sums
from jaxtok.train.metrics import MetricWriter, format_table
from jaxtok.train.optimizer import make_optimizer
from jaxtok.train.steps import TrainState, make_train_step

HYPERNET = nnx.All(nnx.Param, nnx.PathContains("hypernet"))


# --- config ---------------------------------------------------------------------------------


def validate_config(config) -> None:
  t, d, s = config.train, config.data, config.sampler

  need = require

  need(config.base.kind in ("jaxtok", "gguf"), "base.kind", "'jaxtok' or 'gguf'")
  need(t.steps > t.identity_steps >= 0, "train.identity_steps", "must be in [0, train.steps)")
  need(t.lr > 0, "train.lr", "must be positive")
  need(t.aux_weight >= 0, "train.aux_weight", "must be >= 0")
  need(t.identity_batch > 0, "train.identity_batch", "must be positive")
  need(d.batch_size > 0 and d.seq_len > 1, "data.batch_size/seq_len", "must be positive")
  need(d.tokens_per_row > 1, "data.tokens_per_row", "must be > 1")
  need(d.vocab_per_step > 3, "data.vocab_per_step", "must be > 3")
  need(t.log_every > 0, "train.log_every", "must be positive")
  need(t.ckpt_every >= 0 and t.eval_every >= 0, "train.ckpt_every/eval_every", "must be >= 0")
  need(s.window >= 1, "sampler.window", "must be >= 1")
  HypernetConfig.from_dict(config.hypernet)


# --- the base model -------------------------------------------------------------------------


def ensure_base_model(config) -> str:
  """The base jaxtok workdir, trained with the spine's trainer if it holds no checkpoint."""
  b = config.base
  workdir = os.path.expanduser(b.workdir)
  if os.path.exists(os.path.join(workdir, "results.json")):
    return workdir
  spine = config.base_train
  spec = spine.data.tokenizer
  if spec.startswith("bpe:") and b.tokenizer_docs:
    # A BPE trained on a sample of the corpus: seconds instead of the full split.
    corpus = corpora.corpus_for(spine.data, "train")
    data_dir = os.path.expanduser(spine.data.data_dir or corpora.default_data_dir())
    with spine.unlocked():
      spine.data.tokenizer = bpe.get_or_train(
        corpus, int(spec[4:]), os.path.join(data_dir, "tokenizers"), max_docs=b.tokenizer_docs
      )
  print(f"training the base model in {workdir}")
  trainer.train(spine, workdir)
  return workdir


def load_base(config) -> tuple[Transformer, ByteTokenizer]:
  """(base LM, its tokenizer at byte level) as config.base describes."""
  b = config.base
  specials = {k: (b.get(k) or None) for k in ("bos", "eos", "pad")}
  if b.kind == "jaxtok":
    workdir = ensure_base_model(config)
    model, _ = trainer.restore(workdir)
    tok = load_tokenizer(os.path.join(workdir, "tokenizer.json"), **specials)
  else:
    from jaxtok.models.convert import load_gguf_model

    model, tok = load_gguf_model(sources.resolve_gguf(b.gguf))
    if any(specials.values()):
      tok = ByteTokenizer(tok.hf, name=tok.name, **{k: v for k, v in specials.items() if v})
  if model.cfg.vocab_size != tok.vocab_size:
    raise ValueError(
      f"config.base: the model has {model.cfg.vocab_size} embeddings but its tokenizer's byte "
      f"view has {tok.vocab_size} tokens; they must match"
    )
  return model, tok


def base_tables(base: Transformer) -> tuple[jax.Array, jax.Array | None]:
  emb_in = base.embed.embedding.value
  emb_out = None if base.cfg.tie_embeddings else base.head.kernel.value.T
  return emb_in, emb_out


class ZettModel(nnx.Module):
  """The hypernetwork (trained) next to the base LM (frozen)."""

  def __init__(self, hypernet: Hypernet, base: Transformer):
    self.hypernet = hypernet
    self.base = base

  def predict(self, decomp_NxL, copy_ids_N):
    """Embeddings [N, D] (input, output) of N tokens; specials copy their base tokens."""
    emb_in, emb_out = base_tables(self.base)
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
  def loss_fn(model: ZettModel, batch):
    e_in, e_out = model.predict(batch["decomp"], batch["copy_ids"])
    x = jnp.take(e_in, jnp.maximum(batch["inputs"], 0), axis=0)
    h = model.base.hidden(
      x.astype(model.base.embed.dtype),
      segment_ids=batch["segment_ids"],
      positions=batch["positions"],
    )
    logits = jnp.einsum("btd,vd->btv", h.astype(jnp.float32), e_out)
    logits = jnp.where(batch["vocab_valid"][None, None], logits, -1e9)
    sums = token_ce_sums(logits, batch["targets"], batch["target_bytes"])
    aux = _aux_l2(model, e_in, e_out, batch["shared_ids"])
    ce = sums["loss_sum"]
    return {
      **sums,
      "loss_sum": ce + aux_weight * aux * sums["tokens"],
      "ce_sum": ce,
      "aux_sum": aux * sums["tokens"],
    }

  return loss_fn


def _aux_l2(model: ZettModel, e_in, e_out, shared_ids):
  """Mean squared distance to the base embeddings over tokens that exist in the base vocab."""
  emb_in, emb_out = base_tables(model.base)
  ok = shared_ids >= 0
  src = jnp.maximum(shared_ids, 0)
  d = jnp.mean((e_in - emb_in[src].astype(jnp.float32)) ** 2, -1)
  if emb_out is not None:
    d = d + jnp.mean((e_out - emb_out[src].astype(jnp.float32)) ** 2, -1)
  return jnp.sum(jnp.where(ok, d, 0.0)) / jnp.maximum(ok.sum(), 1)


def identity_loss(model: ZettModel, batch):
  """Squared error of the predicted embeddings of base tokens to their own embeddings."""
  emb_in, emb_out = base_tables(model.base)
  pred_in, pred_out = model.hypernet(batch["decomp"], emb_in, emb_out)
  ids = batch["base_ids"]
  err = jnp.mean((pred_in - emb_in[ids].astype(jnp.float32)) ** 2, -1)
  if emb_out is not None:
    err = err + jnp.mean((pred_out - emb_out[ids].astype(jnp.float32)) ** 2, -1)
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
  tb = np.where(targets >= 0, tok.lengths[np.maximum(targets, 0)], 0).astype(np.int32)
  return {
    "inputs": inputs,
    "targets": targets,
    "segment_ids": segments,
    "positions": positions,
    "target_bytes": tb,
  }


def step_vocabulary(
  batch: dict[str, np.ndarray],
  tok: ByteTokenizer,
  base: ByteTokenizer,
  *,
  size: int,
  max_len: int,
  rng: np.random.Generator,
) -> dict[str, np.ndarray]:
  """Remaps a token batch onto its step vocabulary: batch tokens + random negatives."""
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

  def __init__(self, config, base_tok: ByteTokenizer, text_it: packing.PackedBatches):
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
    self._base_ids = np.flatnonzero(base_tok.lengths[: base_tok.hf_size] > 0)

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
    max_len = self.config.hypernet.max_len
    if self._step < t.identity_steps:
      n = t.identity_batch
      ids = rng.choice(self._base_ids, size=n, replace=n > len(self._base_ids)).astype(np.int32)
      decomp = np.full((len(ids), max_len), -1, np.int32)
      decomp[:, 0] = ids  # a base token decomposes to itself
      batch = {"decomp": decomp, "base_ids": ids}
    else:
      pieces = self._read_text()
      tok = self.sampler.sample(rng)
      batch = tokenize_rows(pieces, tok, d.tokens_per_row)
      batch = step_vocabulary(
        batch, tok, self.base, size=d.vocab_per_step, max_len=max_len, rng=rng
      )
      batch["sampled_vocab"] = np.asarray(tok.vocab_size, np.int32)
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


def eval_docs(config, split: str = "validation") -> list[bytes]:
  d, e = config.data, config.eval
  corpus = corpora.corpus_for(d, split)
  docs = [corpus[i][: e.doc_bytes] for i in range(min(len(corpus), e.docs))]
  return [x for x in docs if x]


class Evaluator:
  """Validation bits per byte of the base LM under fixed tokenizers, with predicted embeddings."""

  def __init__(self, config, base: Transformer, base_tok: ByteTokenizer, targets: dict):
    self.base_graphdef, self.base_params = nnx.split(base, nnx.Param)
    self.embeddings = embedding_init.BaseEmbeddings(base_tok, *base_tables(base))
    docs = eval_docs(config)
    e = config.eval
    self.targets = {
      name: (tok, transfer_eval.eval_batches(tok, docs, seq_len=e.seq_len, batch_size=e.batch_size))
      for name, tok in targets.items()
    }

  def bpb(self, tables, batches) -> float:
    params = transfer_eval.with_embeddings(self.base_params, *tables)
    return transfer_eval.bits_per_byte(self.base_graphdef, params, batches)["bpb"]

  def __call__(self, hypernet: Hypernet) -> dict[str, float]:
    out = {}
    for name, (tok, batches) in self.targets.items():
      tables = embedding_init.hypernet_init(tok, self.embeddings, hypernet)
      out[f"bpb_{name}"] = self.bpb(tables, batches)
    return out

  def fvt(self) -> dict[str, float]:
    return {
      f"fvt_bpb_{name}": self.bpb(embedding_init.fvt_init(tok, self.embeddings), batches)
      for name, (tok, batches) in self.targets.items()
    }


def eval_tokenizers(config) -> dict[str, ByteTokenizer]:
  """The unseen tokenizers of the training-time evaluation (config.eval.tokenizers)."""
  from jaxtok.eval.zett_compare import make_target

  out = {}
  for spec in [s.strip() for s in config.eval.tokenizers.split(",") if s.strip()]:
    out[spec.replace(":", "")] = make_target(spec, config)
  return out


# --- the loop -------------------------------------------------------------------------------


def build(config, base: Transformer) -> tuple[ZettModel, Hypernet]:
  hcfg = HypernetConfig.from_dict(config.hypernet)
  emb_in, emb_out = base_tables(base)
  hypernet = Hypernet(hcfg, emb_in=emb_in, emb_out=emb_out, rngs=nnx.Rngs(config.train.seed))
  return ZettModel(hypernet, base), hypernet


def restore_hypernet(workdir: str, base: Transformer | None = None):
  """(hypernet, its config) from a hypernet-training workdir (the base is loaded if not given)."""
  cfg = trainer.load_config(workdir)
  if base is None:
    base, _ = load_base(cfg)
  model, hypernet = build(cfg, base)
  graphdef, params, rest = nnx.split(model, HYPERNET, ...)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  try:
    _, arrays, _ = ckpt.restore({"params": params})
  finally:
    ckpt.close()
  model = nnx.merge(graphdef, arrays["params"], rest)
  return model.hypernet, cfg


def train(config, workdir: str, *, stop_after: int | None = None) -> dict[str, Any]:
  """Trains the hypernetwork of `config` in `workdir`, resuming from its latest checkpoint."""
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  if not config.base.workdir:
    with config.unlocked():
      config.base.workdir = os.path.join(os.path.abspath(workdir), "base")
  t, d = config.train, config.data
  base, base_tok = load_base(config)
  model, _ = build(config, base)
  graphdef, params, frozen = nnx.split(model, HYPERNET, ...)
  if t.base_dtype != "float32":
    frozen = jax.tree.map(lambda x: x.astype(jnp.dtype(t.base_dtype)), frozen)
  tx, schedule = make_optimizer(
    lr=t.lr,
    warmup_steps=t.warmup_steps,
    total_steps=t.steps,
    weight_decay=t.weight_decay,
    clip_norm=t.clip_norm,
    final_lr_fraction=t.final_lr_fraction,
  )
  # Committed to the device from the start: the first step then compiles for the same
  # placement as every later step (uncommitted inputs would cost a second compilation).
  device = jax.devices()[0]
  params, frozen = jax.device_put((params, frozen), device)
  state = TrainState(
    step=jax.device_put(jnp.zeros((), jnp.int32), device),
    params=params,
    opt_state=jax.device_put(jax.jit(tx.init)(params), device),
  )
  n_params = sum(x.size for x in jax.tree.leaves(params))

  corpus = corpora.corpus_for(d, "train")
  text_it = packing.PackedBatches(
    corpus, batch_size=d.batch_size, seq_len=d.seq_len, seed=t.seed, shuffle=True, repeat=True
  )
  batches = ZettBatches(config, base_tok, text_it)
  ckpt = ckpt_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"), max_to_keep=t.keep, async_save=t.async_ckpt
  )
  start = ckpt.latest_step() or 0
  if start:
    _, arrays, js = ckpt.restore(
      {"params": state.params, "opt_state": state.opt_state}, json_keys=("data",)
    )
    step0 = jax.device_put(jnp.asarray(start, jnp.int32), device)
    state = TrainState(step0, *jax.device_put((arrays["params"], arrays["opt_state"]), device))
    batches.set_state(js["data"])
    print(f"resumed from {ckpt.directory} at step {start}")
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))

  id_step = make_train_step(graphdef, tx, schedule, identity_loss)
  tr_step = make_train_step(graphdef, tx, schedule, transfer_loss(t.aux_weight))
  evaluator = Evaluator(config, base, base_tok, eval_tokenizers(config))

  def eval_now(params_now):
    hyper = nnx.merge(graphdef, params_now, frozen).hypernet
    return evaluator(hyper)

  writer = MetricWriter(workdir)
  prefetch = packing.Prefetcher(batches, size=d.prefetch)
  pending: list[tuple[int, dict]] = []
  window = collections.defaultdict(float)
  last: dict[str, float] = {}
  data_state = batches.get_state()
  step, last_saved = start, start
  t_start = time.perf_counter()

  def drain():
    if not pending:
      return
    fetched = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, fetched):
      trainer.check_finite(m["loss"], s, ckpt)
      phase = "transfer" if "ce_sum" in m else "identity"
      row = {f"{phase}_loss": float(m["loss"]), "grad_norm": float(m["grad_norm"])}
      if phase == "transfer":
        row["bpb"] = float(m["ce_sum"]) / LN2 / max(float(m["bytes"]), 1.0)
        row["aux"] = float(m["aux_sum"]) / max(float(m["tokens"]), 1.0)
        for k in ("ce_sum", "bytes", "tokens"):
          window[k] += float(m[k])
      writer.write(s, row, prefix="train/")
      last.update(row)
    pending.clear()

  def save(at_step):
    nonlocal last_saved
    drain()
    ckpt.save(at_step, {"params": state.params, "opt_state": state.opt_state}, {"data": data_state})
    last_saved = at_step

  pbar = tqdm(
    total=t.steps, initial=start, desc="hypernet", unit="step", disable=not t.progress_bar
  )
  stopped_by = None
  try:
    with trainer.sigterm_flag() as sig:
      it = iter(prefetch)
      while step < t.steps:
        batch, data_state = next(it)
        batch = {k: jnp.asarray(v) for k, v in batch.items() if k != "sampled_vocab"}
        fn = tr_step if "inputs" in batch else id_step
        state, metrics = fn(state, batch, frozen)
        step += 1
        pending.append((step, metrics))
        pbar.update(1)
        if step % t.log_every == 0 or step == t.steps:
          drain()
          writer.write(step, {"lr": float(schedule(step))}, prefix="train/")
          pbar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k != "grad_norm"})
          writer.flush()
        if t.eval_every and step % t.eval_every == 0 and step < t.steps:
          drain()
          writer.write(step, eval_now(state.params), prefix="eval/")
        if t.ckpt_every and step % t.ckpt_every == 0:
          save(step)
        if sig["stop"] or (stop_after is not None and step >= stop_after):
          stopped_by = "SIGTERM" if sig["stop"] else "stop_after"
          break
      if step != last_saved:
        save(step)
  finally:
    pbar.close()
    prefetch.close()
    ckpt.close()
    writer.flush()
  if stopped_by:
    writer.close()
    return {"step": step, "stopped_by": stopped_by}

  final = eval_now(state.params)
  writer.write(step, final, prefix="eval/")
  writer.close()
  results = {
    "base": config.base.kind,
    "steps": step,
    "hypernet_parameters": int(n_params),
    "train_bpb": window["ce_sum"] / LN2 / max(window["bytes"], 1.0),
    "train_time_s": time.perf_counter() - t_start,
    **final,
    **evaluator.fvt(),
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results


def results_table(results: dict[str, Any]) -> str:
  return format_table(results, title="hypernetwork training")
