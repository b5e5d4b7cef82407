"""The training loop: data -> jitted step -> metrics / eval / checkpoints.

Everything inside the loop that touches the device is asynchronous: per-step
metrics stay on device and are fetched every `log_every` steps (and before a
checkpoint, so a non-finite loss is never saved). Batches are packed and put
on the device by a background thread.

Nothing is lost: one process owns a workdir (`lock.locked`); a checkpoint holds
only finite weights, and the metric rows up to its step are flushed before it
commits; a resume drops the rows logged after the restored step and, if the
newest checkpoint is damaged, moves it aside and continues from the newest one
that verifies (see `jaxtok.checkpoint`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from jaxtok import checkpoint as ckpt_lib
from jaxtok import distributed, paths
from jaxtok import sharding as shd
from jaxtok.configlib import require
from jaxtok.data import corpora, packing
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.flops import count_params
from jaxtok.models.losses import summarize
from jaxtok.train import lock, patch_level, prepare
from jaxtok.train import phases as phases_lib
from jaxtok.train.metrics import MetricWriter, format_table
from jaxtok.train.optimizer import make_optimizer
from jaxtok.train.steps import TrainState, make_eval_step, make_train_step
from jaxtok.train.task import HostBatches, Task
from jaxtok.train.tasks import TASKS, get_task, make_phases

MAX_IN_FLIGHT = 2  # steps dispatched but not finished


class TrainingDivergedError(RuntimeError):
  """A non-finite loss: the run stops and the last good checkpoint is kept."""


def validate_config(config) -> None:
  """Checks, before anything is written, the fields the trainer relies on; messages name the
  field."""
  t, d = config.train, config.data

  need = require

  need(t.steps > 0, "train.steps", f"must be positive, got {t.steps}")
  need(t.lr > 0, "train.lr", f"must be positive, got {t.lr}")
  need(0 <= t.warmup_steps, "train.warmup_steps", f"must be >= 0, got {t.warmup_steps}")
  need(t.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {t.grad_accum}")
  need(d.batch_size >= 1, "data.batch_size", f"must be >= 1, got {d.batch_size}")
  need(
    d.batch_size % t.grad_accum == 0,
    "data.batch_size",
    f"{d.batch_size} must be divisible by train.grad_accum={t.grad_accum}",
  )
  need(d.seq_len > 1, "data.seq_len", f"must be > 1, got {d.seq_len}")
  need(d.eval_batches >= 0, "data.eval_batches", f"must be >= 0, got {d.eval_batches}")
  need(d.prefetch >= 1, "data.prefetch", f"must be >= 1, got {d.prefetch}")
  need(0 <= d.val_fraction < 1, "data.val_fraction", f"must be in [0, 1), got {d.val_fraction}")
  need(t.log_every > 0, "train.log_every", f"must be positive, got {t.log_every}")
  need(t.ckpt_every >= 0, "train.ckpt_every", f"must be >= 0, got {t.ckpt_every}")
  need(t.eval_every >= 0, "train.eval_every", f"must be >= 0, got {t.eval_every}")
  need(t.keep >= 1, "train.keep", f"must be >= 1 (checkpoints kept), got {t.keep}")
  shd.parse_rules(config.mesh.get("rules", "default"))  # a bad table fails before any write
  need(config.mesh.get("dcn_data", 1) >= 1, "mesh.dcn_data", "must be >= 1 (1 = one slice, no DCN)")
  name = config.model.get("name", "transformer")
  need(name in TASKS, "model.name", f"{name!r} is unknown; known: {sorted(TASKS)}")
  if name in workdir_lib.MODELS:
    workdir_lib.model_config(config)  # the model's own checks (vocab_size comes later)


def build_params(task: Task, config, mesh, rules=None):
  """(graphdef, trainable params, frozen state) of the task's model, on the mesh.

  The parameters are created directly with their shardings (one jitted initialisation
  whose outputs are the shards): no device ever holds the whole model, so a model larger
  than one device starts. A frozen part (a ZeTT base LM, loaded from files) is placed
  shard by shard.
  """
  seed = config.train.seed
  split = lambda model: nnx.split(model, task.trainable, ...)
  graphdef, params, frozen = split(nnx.eval_shape(lambda: task.build_model(nnx.Rngs(seed))))
  if any(not isinstance(v, nnx.Param) for v in jax.tree.leaves(frozen, is_leaf=_is_var)):
    raise ValueError("the model holds non-parameter state; the trainer only handles nnx.Param")
  shardings = shd.state_shardings(params, mesh, rules), shd.state_shardings(frozen, mesh, rules)
  if jax.tree.leaves(frozen):
    # Its weights come from files: inside jit they would be baked into the program.
    _, params, frozen = split(task.build_model(nnx.Rngs(seed)))
    return graphdef, *jax.device_put((params, frozen), shardings)
  init = jax.jit(lambda: split(task.build_model(nnx.Rngs(seed)))[1:], out_shardings=shardings)
  return graphdef, *init()


def _is_var(x) -> bool:
  return isinstance(x, nnx.Variable)


def optimizer_for(config, total_steps: int):
  t = config.train
  return make_optimizer(
    lr=t.lr,
    warmup_steps=t.warmup_steps,
    total_steps=total_steps,
    weight_decay=t.weight_decay,
    b1=t.b1,
    b2=t.b2,
    clip_norm=t.clip_norm,
    final_lr_fraction=t.final_lr_fraction,
  )


def fresh_state(tx, params, mesh) -> TrainState:
  """Step 0 of a phase: these weights, a new optimizer state, all on the mesh.

  Adam's moments get their parameter's sharding from the start (left to XLA, zeros come
  out replicated and the step would reshard them, and compile again, at step 2); scalars
  (step, Adam's count) are replicated on the mesh, as the step returns them.
  """
  replicated = shd.replicated(mesh)
  param_shardings = jax.tree.map(lambda x: x.sharding, params)
  opt_shardings = optax.tree_map_params(
    tx,
    lambda _, sharding: sharding,
    jax.eval_shape(tx.init, params),
    param_shardings,
    transform_non_params=lambda _: replicated,
  )
  return TrainState(
    step=jax.device_put(jnp.zeros((), jnp.int32), replicated),
    params=params,
    opt_state=jax.jit(tx.init, out_shardings=opt_shardings)(params),
  )


def fresh_buffers(tree):
  """The same arrays in newly allocated buffers (a host round trip), on CPU only.

  At a phase switch on CPU, token steps that read the parameter buffers the patch phase's
  step wrote ran 20-30% slower than a token-only run, for the whole phase; copying the
  weights through the host brought them back to token-only speed (measured, cause not
  found). Arrays that span processes are left as they are.
  """
  if jax.default_backend() != "cpu":
    return tree

  def copy(x):
    return jax.device_put(np.asarray(x), x.sharding) if x.is_fully_addressable else x

  return jax.tree.map(copy, tree)


def check_finite(loss, step: int, ckpt: ckpt_lib.Checkpointer) -> None:
  """Stops the run on a non-finite loss, naming the checkpoint that is kept."""
  if not math.isfinite(float(loss)):
    raise diverged(f"non-finite loss {float(loss)} at step {step}", ckpt)


def diverged(what: str, ckpt: ckpt_lib.Checkpointer) -> TrainingDivergedError:
  # Checkpoints hold finite weights only (Checkpointer.save refuses others), so the
  # newest one is good.
  return TrainingDivergedError(
    f"{what}; stopping. The last good checkpoint (step {ckpt.latest_step()}) in "
    f"{ckpt.directory} is kept. Lower config.train.lr or enable clipping "
    "(config.train.clip_norm)."
  )


def to_device(
  batch: dict[str, np.ndarray], sharding, replicated_keys=(), replicated=None
) -> dict[str, jax.Array]:
  """Rows split over the mesh's data axes; per-step tables (`replicated_keys`) replicated."""

  def put(k, v):
    if k in replicated_keys:
      return jax.device_put(v, replicated)
    return jax.make_array_from_process_local_data(sharding, v)

  return {k: put(k, v) for k, v in batch.items()}


def make_batches(
  task: Task,
  config,
  split: str,
  *,
  seed: int,
  repeat: bool,
  shuffle: bool,
  process_index: int | None = None,
  process_count: int | None = None,
):
  """(corpus, packed batches of one process: its share of the documents and of the rows)."""
  d = config.data
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  corpus = corpora.corpus_for(d, split)
  it = packing.PackedBatches(
    corpus,
    batch_size=d.batch_size // count,
    seq_len=d.seq_len,
    seed=seed,
    shuffle=shuffle,
    repeat=repeat,
    process_index=index,
    process_count=count,
    encode_fn=task.encode_fn,
  )
  return corpus, it


def validation_batches(
  task: Task, config, *, process_index: int | None = None, process_count: int | None = None
):
  """(corpus, this process's host batches of the validation split: the first
  data.eval_batches, or all with 0).

  Processes hold different numbers of batches of a split (their documents differ); the
  caller pads them to a count all processes agree on (`pad_batches`).
  """
  corpus, it = make_batches(
    task,
    config,
    "validation",
    seed=0,
    repeat=False,
    shuffle=False,
    process_index=process_index,
    process_count=process_count,
  )
  return corpus, list(itertools.islice(it, config.data.eval_batches or None))


def pad_batches(batches: list, count: int, rows: int, seq_len: int) -> list:
  """`batches` + empty batches (no targets: zero tokens, zero bytes) up to `count`."""
  if len(batches) > count:
    raise ValueError(f"{len(batches)} batches is more than the agreed count {count}")
  blank = packing.empty_batch(batches[0] if batches else None, rows=rows, seq_len=seq_len)
  return batches + [blank] * (count - len(batches))


def evaluate(eval_step, params, frozen, batches, to_dev) -> dict[str, float]:
  """Summed statistics over a fixed list of batches -> loss / bpb."""
  totals = None
  for batch in batches:
    # Fetched batch by batch: a process running far ahead of the others with many
    # computations in flight hung in a collective (2 CPU processes, XLA's CPU client).
    sums = jax.device_get(eval_step(params, to_dev(batch), *frozen))
    totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
  return summarize(totals)


@contextlib.contextmanager
def sigterm_flag():
  """Turns SIGTERM into a flag the loop checks after each step."""
  flag = {"stop": False}

  def handler(signum, frame):
    flag["stop"] = True

  try:
    previous = signal.signal(signal.SIGTERM, handler)
  except ValueError:  # not the main thread: no signal handling
    yield flag
    return
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)


def train(config, workdir: str, *, stop_after: int | None = None) -> dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its newest good checkpoint.

  The config is checked before anything is written, and the workdir is locked
  for the run (`lock.WorkdirBusyError` if another process has it). Runs that
  must finish first (`prepare.prerequisites`: a ZeTT base LM) are trained
  first; `prepare.prepare` resolves what the task needs from the data (and
  refuses a config that disagrees with the workdir's) and the resolved config
  is what `workdir/config.json` holds.
  `stop_after` ends the run (with a checkpoint) after that global step, as if
  interrupted; tests use it to check that resuming reproduces the losses.
  Returns the results dict that is also written to workdir/results.json.
  """
  validate_config(config)
  workdir = paths.check(workdir)  # a URL (gs://) stays one; an unsupported one is refused
  # One lock per workdir, taken by process 0 (the other processes of a multi-host job
  # write the same workdir through orbax, which coordinates them).
  owner = jax.process_index() == 0
  with lock.locked(workdir) if owner else contextlib.nullcontext():
    for pre_config, pre_workdir in prepare.prerequisites(config, workdir):
      print(f"training {pre_workdir} first")
      train(pre_config, pre_workdir)
    config = prepare.prepare(config, workdir)
    return _train(config, workdir, stop_after)


def _train(config, workdir: str, stop_after: int | None) -> dict[str, Any]:
  """The training run proper, on a prepared config in a locked workdir."""
  t, d = config.train, config.data
  mesh, rules = shd.from_config(config.mesh)
  shards = shd.batch_shards(mesh.shape, rules)
  require(
    (d.batch_size // t.grad_accum) % shards == 0,
    "data.batch_size",
    f"{d.batch_size} rows (/ train.grad_accum={t.grad_accum}) must split over the batch's "
    f"{shards} shards of config.mesh (mesh.rules={config.mesh.get('rules', 'default')!r})",
  )
  task = get_task(config, mesh=mesh, rules=rules)
  batch_sharding, replicated = shd.batch_sharding(mesh, rules), shd.replicated(mesh)

  def to_dev(batch):
    return to_device(batch, batch_sharding, task.replicated_keys, replicated)

  graphdef, params, frozen = build_params(task, config, mesh, rules)
  frozen = (frozen,) if jax.tree.leaves(frozen) else ()  # extra step arguments
  n_params = count_params(params)
  phases = make_phases(task, config)
  ends = np.cumsum([p.steps for p in phases]).tolist()  # global step at which each phase ends
  pi = 0  # the phase of the steps being taken
  tx, schedule = optimizer_for(config, phases[pi].steps)
  state = fresh_state(tx, params, mesh)
  stats = [phases_lib.new_stats() for _ in phases]

  _, train_it = make_batches(task, config, "train", seed=t.seed, repeat=True, shuffle=True)
  wrap = task.wrap_batches or (lambda it: HostBatches(it, task.host_transform))
  host_batches = wrap(train_it)
  val_corpus, val_batches, evaluator = None, [], None
  if task.make_evaluator is None:
    val_corpus, packed = validation_batches(task, config)
    # Every process runs each evaluation step (a collective): they agree on the count.
    count = distributed.agree_max(len(packed))
    packed = pad_batches(packed, count, d.batch_size // jax.process_count(), d.seq_len)
    val_batches = list(HostBatches(iter(packed), task.host_transform))
  else:
    evaluator = task.make_evaluator(graphdef)

  ckpt = workdir_lib.checkpointer(workdir, max_to_keep=t.keep, async_save=t.async_ckpt)
  try:
    restored = resume(ckpt, {"params": state.params, "opt_state": state.opt_state})
    if restored:
      where = f"checkpoint {ckpt.directory} step {restored.step}"
      own_data_state = process_data_state(restored.json["data"], where)
  except BaseException:
    ckpt.close()
    raise
  start = restored.step if restored else 0
  if restored:
    arrays, js = restored.arrays, restored.json
    pi = _check_phase(js["phase"], start, phases, ends, ckpt.directory)
    if pi:
      tx, schedule = optimizer_for(config, phases[pi].steps)
    stats = js["phase"]["stats"]
    phase_step0 = jnp.asarray(start - (ends[pi] - phases[pi].steps), jnp.int32)
    state = TrainState(
      step=jax.device_put(phase_step0, state.step.sharding),
      params=arrays["params"],
      opt_state=arrays["opt_state"],
    )
    host_batches.set_state(own_data_state)
    print(f"resumed from {ckpt.directory} at step {start}")
  if jax.process_index() == 0:
    ckpt_lib.write_atomic(
      paths.join(workdir, workdir_lib.CONFIG_FILE), config.to_json_best_effort(indent=2)
    )

  def phase_step():
    return make_train_step(
      graphdef,
      tx,
      schedule,
      phases[pi].loss_fn,
      grad_accum=t.grad_accum,
      state_shardings=jax.tree.map(lambda x: x.sharding, state),
    )

  def evaluate_now(params_now) -> dict[str, float]:
    if evaluator is not None:
      return evaluator(params_now, *frozen)
    return evaluate(eval_step, params_now, frozen, val_batches, to_dev)

  train_step = phase_step()
  eval_step = make_eval_step(graphdef, task.eval_loss_fn or task.loss_fn)
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0, resume_step=start)
  prefetch = packing.Prefetcher(host_batches, size=d.prefetch)

  pending: list[tuple[int, int, dict]] = []  # (step, phase, device metrics) not yet fetched
  window = dict(bytes=0.0, tokens=0.0, bpb_nats=0.0, time=0.0)  # since the last log line
  clock = {"t": time.perf_counter(), "train_time": 0.0, "steps": 0}
  last_train: dict[str, float] = {}
  data_state = host_batches.get_state()
  step = last_saved = start
  compile_s = 0.0
  compiled = False  # has this phase's step compiled in this process

  def drain():
    """Fetches pending per-step metrics, logs them, stops on a non-finite loss."""
    if not pending:
      return
    fetched = jax.device_get([m for _, _, m in pending])
    for (s, i, _), m in zip(pending, fetched):
      check_finite(m["loss"], s, ckpt)
      writer.write(s, step_scalars(m), prefix=f"{phases[i].name}/")
      for k in ("bytes", "tokens"):
        window[k] += float(m[k])
        stats[i][k] += float(m[k])
      window["bpb_nats"] += float(m.get("bpb_nats", m["loss_sum"]))
    last_train.update({k: float(fetched[-1][k]) for k in ("loss", "bpb", "grad_norm", "lr")})
    pending.clear()

  def stop_clock():
    """Syncs and books the time since the clock started as training time."""
    drain()
    dt = time.perf_counter() - clock["t"]
    window["time"] += dt
    clock["train_time"] += dt
    stats[pi]["time"] += dt
    stats[pi]["timed_steps"] += clock["steps"]
    if clock["steps"]:
      stats[pi]["windows"].append([clock["steps"], dt])
    clock["steps"] = 0

  def start_clock():
    clock["t"] = time.perf_counter()
    clock["steps"] = 0

  def log_window():
    stop_clock()
    secs = max(window["time"], 1e-9)
    last_train.update(
      bytes_per_s=window["bytes"] / secs,
      tokens_per_s=window["tokens"] / secs,
      bpb_window=window["bpb_nats"] / math.log(2) / max(window["bytes"], 1.0),
    )
    writer.write(step, last_train, prefix=f"{phases[pi].name}/")
    writer.flush()
    pbar.set_postfix(
      loss=f"{last_train['loss']:.3f}",
      bpb=f"{last_train['bpb_window']:.3f}",
      bytes_s=f"{last_train['bytes_per_s']:.0f}",
    )
    window.update(bytes=0.0, tokens=0.0, bpb_nats=0.0, time=0.0)
    start_clock()

  def save(at_step):
    nonlocal last_saved
    stop_clock()  # never save after an unchecked step
    writer.flush()  # the rows up to at_step are on disk before its checkpoint commits
    phase = {"index": pi, "name": phases[pi].name, "stats": stats}
    try:
      ckpt.save(
        at_step,
        {"params": state.params, "opt_state": state.opt_state},
        # Each process reads its own documents: every position is saved (a collective).
        {"data": {"processes": distributed.allgather_json(data_state)}, "phase": phase},
      )
    except ckpt_lib.NotFiniteError as e:
      what = f"the weights after step {at_step} are not finite ({e}), not saved"
      raise diverged(what, ckpt) from e
    last_saved = at_step
    start_clock()

  pbar = tqdm(
    total=t.steps,
    initial=start,
    desc=phases[pi].name,
    unit="step",
    dynamic_ncols=True,
    disable=jax.process_index() != 0 or not t.progress_bar,
  )
  stopped_by = None
  try:
    # The ambient mesh lets kernels (impl="pallas") run per shard under shard_map.
    # The rules: activation constraints (jaxtok.sharding.constrain) of the traced steps.
    with sigterm_flag() as sig, shd.activate(mesh, rules):
      batches = iter(prefetch)
      while step < ends[-1]:
        if step == ends[pi]:  # next phase: same weights and data stream, new optimizer
          pi += 1
          tx, schedule = optimizer_for(config, phases[pi].steps)
          state = fresh_state(tx, fresh_buffers(state.params), mesh)
          train_step, compiled = phase_step(), False
          last_train.clear()
          pbar.set_description(phases[pi].name)
          start_clock()
        batch, data_state = next(batches)
        if phases[pi].transform:
          batch = phases[pi].transform(batch)
        state, metrics = train_step(state, to_dev(batch), *frozen)
        step += 1
        clock["steps"] += 1
        pending.append((step, pi, metrics))
        if len(pending) > MAX_IN_FLIGHT:  # bound how far dispatch runs ahead of compute,
          pending[-MAX_IN_FLIGHT - 1][2]["loss"].block_until_ready()  # so the bar is honest
        pbar.update(1)
        if not compiled:  # keep compilation out of the throughput numbers
          drain()
          compile_s += time.perf_counter() - clock["t"]
          compiled = True
          start_clock()
          window.update(bytes=0.0, tokens=0.0, bpb_nats=0.0)
        if step % t.log_every == 0 or step == ends[pi]:
          log_window()
        if t.eval_every and step % t.eval_every == 0 and step < ends[-1]:
          stop_clock()
          writer.write(step, evaluate_now(state.params), prefix="eval/")
          start_clock()
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

  with shd.activate(mesh, rules):
    final_eval = evaluate_now(state.params)
  writer.write(step, final_eval, prefix="eval/")
  writer.close()
  flops = task.flops
  results = {
    "model": task.name,
    "data": d.name,
    "steps": step,
    "parameters": n_params,
    "train_bpb": last_train.get("bpb_window", float("nan")),
    "bytes_per_s": last_train.get("bytes_per_s", float("nan")),
    "tokens_per_s": last_train.get("tokens_per_s", float("nan")),
    "compile_s": compile_s,
    "train_time_s": clock["train_time"],
    **task.extra,
  }
  if flops.parts:  # a task that counts its FLOPs
    results.update(train_flops_per_byte=flops.train, inference_flops_per_byte=flops.inference)
  if evaluator is None:
    results.update(
      val_bpb=final_eval["bpb"], val_loss=final_eval["loss"], val_bytes=final_eval["bytes"]
    )
    if d.get("unigram_baseline", True):
      results["val_unigram_bpb"] = packing.unigram_bits_per_byte(val_corpus)
  else:
    results.update(final_eval)
  if task.eval_results:
    results.update(task.eval_results(final_eval))
  results.update(phases_lib.report(phases, stats, compare=patch_level.enabled(config)))
  if jax.process_index() == 0:
    ckpt_lib.write_atomic(paths.join(workdir, "results.json"), json.dumps(results, indent=2))
  return results


def resume(ckpt: ckpt_lib.Checkpointer, like: dict[str, Any]) -> ckpt_lib.Restored | None:
  """The newest checkpoint that verifies, or None for a fresh run.

  Damaged newer checkpoints are moved aside (never deleted), and said so: the
  run continues from an earlier step rather than stopping or starting over.
  """
  if ckpt.latest_step() is None:
    return None
  restored = ckpt.restore(like, json_keys=("data", "phase"))
  if not ckpt.skipped:
    return restored
  distributed.barrier("jaxtok_restored")  # every process has read before one moves
  for step, why in ckpt.skipped:
    if jax.process_index() == 0:
      print(f"skipped checkpoint step {step}: {why}\n  moved to {ckpt.set_aside(step)}")
  distributed.barrier("jaxtok_set_aside")
  ckpt.reload()  # the other processes see the move too
  return restored


def process_data_state(saved: dict, where: str) -> dict:
  """This process's data-iterator position from a checkpoint's "data" item.

  The stream is split by process (documents and rows), so a checkpoint resumes only
  with the process count that wrote it; another count is refused.
  """
  # Checkpoints of single-process runs from before per-process positions hold one state.
  states = saved["processes"] if "processes" in saved else [saved]
  if len(states) != jax.process_count():
    raise ckpt_lib.CheckpointError(
      f"{where} was written by a run of {len(states)} process(es); this run has "
      f"{jax.process_count()}. Each process reads its own share of the data, so a run "
      "resumes only with the process count it started with (--num_processes); another "
      "count needs a new workdir."
    )
  return states[jax.process_index()]


def step_scalars(m: dict[str, float]) -> dict[str, float]:
  """What one step logs: its loss, and each extra "<name>_sum" of the loss per token."""
  tokens = max(float(m["tokens"]), 1.0)
  sums = {k[:-4]: float(v) / tokens for k, v in m.items() if k.endswith("_sum") and k != "loss_sum"}
  return {"loss": float(m["loss"]), **sums}


def _check_phase(saved: dict, step: int, phases, ends, directory) -> int:
  """The phase to continue in after checkpoint `step`, which was taken in phase `saved`."""
  i = saved["index"]
  want = next(j for j, end in enumerate(ends) if step <= end)  # the phase that takes `step`
  if i != want or saved["name"] != phases[i].name:
    plan = ", ".join(f"{p.name} to step {e}" for p, e in zip(phases, ends))
    raise ckpt_lib.CheckpointError(
      f"checkpoint {directory} step {step} was written in phase {i} ({saved['name']!r}), but "
      f"this config runs {plan} (did config.train.steps or train.patch_level change?)"
    )
  return i


def results_table(results: dict[str, Any]) -> str:
  keep = [
    "model",
    "data",
    "steps",
    "parameters",
    "train_bpb",
    "val_bpb",
    "val_unigram_bpb",
    "bytes_per_s",
    "tokens_per_s",
    "train_flops_per_byte",
    "inference_flops_per_byte",
    "train_time_s",
    "relative_cost",
    "relative_train_flops",
    "wall_clock_ratio",
    "wall_clock_ratio_median",
  ]
  return format_table({k: results[k] for k in keep if k in results}, title="jaxtok results")
