"""A job of 2 CPU processes on localhost (jax.distributed, 2 fake devices each), started the
way a user starts one: the experiments' --distributed flags.

Per model (tiny transformer, tiny BLT): a run stopped at a step and resumed logs the same
losses as the uninterrupted 2-process run (each process restores its own data position),
and the final whole-split evaluation ends and equals one process evaluating the same
documents (each process's share of the split, as it packs them) with no padding.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from jaxtok.checkpoint import CheckpointError
from jaxtok.data import corpora
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.losses import summarize
from jaxtok.train import trainer
from jaxtok.train.metrics import read_metrics
from jaxtok.train.steps import make_eval_step
from jaxtok.train.tasks import get_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiprocess_worker.py")
STEPS, STOP = 4, 2
TIMEOUT_S = 480  # a hung collective fails the test instead of blocking CI


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """(data name, data_dir): 40 small documents of varied length, built once (the processes
  only read it)."""
  root = tmp_path_factory.mktemp("mp_corpus")
  rng = np.random.default_rng(0)
  words = "the of a patch byte entropy model token layer mesh host device shard".split()
  for i in range(40):
    text = " ".join(rng.choice(words, size=int(rng.integers(20, 250))))
    (root / "docs" / f"doc{i:02d}.txt").parent.mkdir(exist_ok=True)
    (root / "docs" / f"doc{i:02d}.txt").write_text(text + "\n")
  name, data_dir = f"files:{root / 'docs'}/*.txt", str(root / "tfds")
  for split in ("train", "validation"):
    corpora.load_corpus(name, split=split, data_dir=data_dir, val_fraction=0.2)
  return name, data_dir


def overrides(corpus) -> dict:
  name, data_dir = corpus
  return {
    "data.name": name,
    "data.data_dir": data_dir,
    "data.val_fraction": 0.2,
    "data.seq_len": 64,
    "data.batch_size": 8,
    "data.eval_batches": 0,  # the whole split
    "data.unigram_baseline": False,
    "train.steps": STEPS,
    "train.warmup_steps": 2,
    "train.log_every": 1,
    "train.eval_every": 0,
    "train.ckpt_every": 0,  # checkpoints where a run stops and ends only
    "train.progress_bar": False,
  }


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch(tmp_path, spec: dict, n: int = 2) -> dict:
  """Runs the worker as an n-process job; process 0's RESULT."""
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=ROOT,
    # The three runs of a job compile the same steps: compile once (the machine's cores
    # are few and shared).
    JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  port = free_port()
  procs, logs = [], []
  for i in range(n):
    out, err = open(tmp_path / f"p{i}.out", "w+"), open(tmp_path / f"p{i}.err", "w+")
    logs.append((out, err))
    cmd = [
      sys.executable,
      WORKER,
      f"--spec={json.dumps(spec)}",
      "--verbosity=-1",
      "--distributed=on",
    ]
    cmd += [f"--coordinator_address=localhost:{port}", f"--num_processes={n}", f"--process_id={i}"]
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err))
  deadline = time.monotonic() + TIMEOUT_S
  try:
    for p in procs:
      p.wait(timeout=max(1.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    hung = [p for p in procs if p.poll() is None]
    for p in hung:
      p.kill()
      p.wait()
  tails = []
  for i, (out, err) in enumerate(logs):
    err.seek(0)
    tails.append(f"--- process {i} (rc {procs[i].returncode}):\n{err.read()[-2500:]}")
  assert not hung, f"{len(hung)} process(es) hung past {TIMEOUT_S}s\n" + "\n".join(tails)
  assert all(p.returncode == 0 for p in procs), "\n".join(tails)
  logs[0][0].seek(0)
  line = next(l for l in logs[0][0].read().splitlines() if l.startswith("RESULT"))
  return json.loads(line[len("RESULT ") :])


def one_process_eval(workdir: str, n: int) -> tuple[dict, list[int]]:
  """Evaluation, in this single process, of the documents each of `n` processes packs:
  (summed statistics, batches per process)."""
  config = workdir_lib.load_config(workdir)
  task = get_task(config)
  model, _ = workdir_lib.restore(workdir)
  graphdef, params = nnx.split(model)
  eval_step = make_eval_step(graphdef, task.eval_loss_fn or task.loss_fn)
  transform = task.host_transform or (lambda batch: batch)
  totals, counts = None, []
  for i in range(n):
    _, packed = trainer.validation_batches(task, config, process_index=i, process_count=n)
    counts.append(len(packed))
    for batch in packed:
      sums = jax.device_get(eval_step(params, transform(batch)))
      totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
  return summarize(totals), counts


# tiny_blt (~100 s) behind -m slow: the tiny case runs the same two-process machinery, and
# test_activation_sharding checks BLT on a multi-device mesh
@pytest.mark.parametrize("config", ["tiny", pytest.param("tiny_blt", marks=pytest.mark.slow)])
def test_two_processes_resume_and_evaluate(tmp_path, corpus, config):
  full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
  spec = {
    "config": config,
    "overrides": overrides(corpus),
    "runs": [[full, None], [resumed, STOP], [resumed, None]],
  }
  out = launch(tmp_path, spec)
  assert (out["processes"], out["devices"]) == (2, 4)
  first, stopped, finished = out["results"]
  assert stopped == {"step": STOP, "stopped_by": "stop_after"}

  # Resumed at STOP, with each process's own data position: the same losses.
  want = read_metrics(full, "train/loss")
  got = read_metrics(resumed, "train/loss")
  assert sorted(want) == list(range(1, STEPS + 1))
  assert [got[s] for s in sorted(got)] == pytest.approx([want[s] for s in sorted(want)], rel=1e-6)
  assert finished["val_bpb"] == pytest.approx(first["val_bpb"], rel=1e-6)

  # The whole split, on processes holding different numbers of batches, equals one
  # process evaluating each process's share.
  ref, counts = one_process_eval(full, 2)
  assert counts[0] != counts[1]  # the padding with empty batches is exercised
  val_docs = corpora.load_corpus(
    corpus[0], split="validation", data_dir=corpus[1], val_fraction=0.2
  )
  assert first["val_bytes"] == ref["bytes"] == sum(len(doc) for doc in val_docs)
  assert first["val_loss"] == pytest.approx(ref["loss"], rel=1e-5)
  assert first["val_bpb"] == pytest.approx(ref["bpb"], rel=1e-5)

  if config == "tiny":
    # One process cannot take over the data positions of two: refused, nothing written.
    before = {f: os.path.getmtime(os.path.join(full, f)) for f in ("config.json", "metrics.jsonl")}
    c = workdir_lib.load_config(full)
    with pytest.raises(CheckpointError, match=r"2 process\(es\); this run has 1"):
      trainer.train(c, full)
    assert before == {f: os.path.getmtime(os.path.join(full, f)) for f in before}
