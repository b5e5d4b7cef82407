"""jaxtok.checkpoint: only finite state is saved, nothing is pruned before a newer checkpoint
commits, a restore verifies what it reads, and reading writes nothing."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxtok
from jaxtok import checkpoint as ckpt_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # subprocesses import this
TREE = {"w": jax.random.normal(jax.random.key(0), (64, 48)), "b": jnp.arange(10.0)}


def saved(directory, steps, **kw):
  ck = ckpt_lib.Checkpointer(str(directory), async_save=False, **kw)
  for s in steps:
    ck.save(s, {"params": jax.tree.map(lambda x: x + s, TREE)}, {"data": {"pos": s}})
  ck.close()
  return str(directory)


def equal(a, b):
  return all(
    np.array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def test_save_refuses_non_finite_state_and_writes_nothing(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), async_save=False)
  bad = {**TREE, "b": TREE["b"].at[3].set(jnp.inf)}
  with pytest.raises(ckpt_lib.NotFiniteError, match="params b holds NaN or Inf"):
    ck.save(1, {"params": bad})
  ck.close()
  assert os.listdir(tmp_path) == []


def test_restore_returns_what_was_saved_with_its_dtype(tmp_path):
  d = saved(tmp_path, [1, 2])
  ck = ckpt_lib.Checkpointer(d, read_only=True)
  like = {"params": {**TREE, "w": TREE["w"].astype(jnp.bfloat16)}}  # a cast on the way in
  step, arrays, js = ck.restore(like, json_keys=("data",))
  ck.close()
  assert step == 2 and js == {"data": {"pos": 2}} and ck.skipped == []
  assert arrays["params"]["w"].dtype == jnp.bfloat16
  assert np.array_equal(np.asarray(arrays["params"]["b"]), np.asarray(TREE["b"] + 2))


def test_flipped_bytes_never_restore_other_values(tmp_path):
  """Every byte of the stored arrays, flipped in turn: refused as corrupt, or the same values.

  Small arrays sit uncompressed in OCDBT's b-tree, where tensorstore notices no flip; the
  manifest's checksums do.
  """
  d = saved(tmp_path / "ck", [1])
  files = sorted(
    os.path.join(r, f)
    for r, _, fs in os.walk(os.path.join(d, "1", "params"))
    for f in fs
    if os.sep + "d" + os.sep in os.path.join(r, f)
  )
  outcomes = {"refused": 0, "same": 0}
  for path in files:
    data = open(path, "rb").read()
    for at in range(0, len(data), max(1, len(data) // 25)):
      with open(path, "wb") as f:
        f.write(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :])
      ck = ckpt_lib.Checkpointer(d, read_only=True)
      try:
        _, arrays, _ = ck.restore({"params": TREE}, step=1)
        assert equal(arrays["params"], jax.tree.map(lambda x: x + 1, TREE)), (path, at)
        outcomes["same"] += 1
      except ckpt_lib.CorruptCheckpointError:
        outcomes["refused"] += 1
      finally:
        ck.close()
    with open(path, "wb") as f:
      f.write(data)
  assert outcomes["refused"] > 10, outcomes


def test_restore_writes_nothing(tmp_path):
  missing = tmp_path / "none"
  ck = ckpt_lib.Checkpointer(str(missing), read_only=True)
  assert ck.latest_step() is None
  with pytest.raises(ckpt_lib.CheckpointError, match="no checkpoint"):
    ck.restore({"params": TREE})
  ck.close()
  assert not missing.exists()


def test_jaxtok_restore_of_a_workdir_without_checkpoints_creates_nothing(tmp_path):
  (tmp_path / "config.json").write_text('{"model": {"d_model": 8, "n_layers": 1, "n_heads": 1}}')
  with pytest.raises(ckpt_lib.CheckpointError, match="no checkpoint"):
    jaxtok.restore(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["config.json"]


# A failed asynchronous write (RLIMIT_FSIZE: "File too large", as a full disk fails) must
# not cost the previous checkpoint, even with max_to_keep=1.
FAILED_WRITE = """
import resource, signal
import jax
from jaxtok import checkpoint as ckpt_lib
tree = {"w": jax.random.normal(jax.random.key(0), (256, 256))}
ck = ckpt_lib.Checkpointer(DIR, max_to_keep=1)
ck.save(1, {"params": tree})
ck.save(2, {"params": tree})
ck.close()  # 2 committed, 1 pruned
ck = ckpt_lib.Checkpointer(DIR, max_to_keep=1)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
ck.save(3, {"params": tree})  # written in the background, fails there
try:
  ck.close()
except ckpt_lib.CheckpointWriteError as e:
  print("ERROR", e)
"""


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
  d = str(tmp_path / "ck")
  script = FAILED_WRITE.replace("DIR", repr(d))
  out = subprocess.run(
    [sys.executable, "-c", textwrap.dedent(script)],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "ERROR writing checkpoint step 3" in out.stdout, out.stdout + out.stderr[-3000:]
  assert "disk full" in out.stdout and "The last complete checkpoint (step 2) is kept" in out.stdout
  ck = ckpt_lib.Checkpointer(d, read_only=True)
  step, arrays, _ = ck.restore({"params": {"w": jnp.zeros((256, 256))}})
  ck.close()
  assert step == 2 and ck.skipped == []


def test_write_atomic_keeps_the_old_file_when_a_write_fails(tmp_path):
  path = tmp_path / "results.json"
  ckpt_lib.write_atomic(str(path), "old")
  with pytest.raises(TypeError):
    ckpt_lib.write_atomic(str(path), object())  # fails while writing the temporary file
  assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]
  ckpt_lib.write_atomic(str(path), b"new")
  assert path.read_text() == "new"
  umask = os.umask(0o022)
  try:
    ckpt_lib.write_atomic(str(tmp_path / "fresh.json"), "{}")
  finally:
    os.umask(umask)
  assert (tmp_path / "fresh.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


# Many arrays read at once, one of them damaged: orbax gives up at the first error, and the
# reads still in flight used to print "Event loop is closed" tracebacks after the real error.
DAMAGED_RESTORE = """
import gc, glob, os, time
import jax, jax.numpy as jnp
from jaxtok import checkpoint as ckpt_lib
tree = {f"a{i}": jax.random.normal(jax.random.key(i), (64, 64)) for i in range(48)}
ck = ckpt_lib.Checkpointer(DIR, async_save=False)
ck.save(1, {"params": tree, "opt_state": tree})
ck.close()
for f in glob.glob(os.path.join(DIR, "1", "*", "ocdbt.process_0", "d", "*")):
  os.truncate(f, os.path.getsize(f) // 2)
for _ in range(6):
  ck = ckpt_lib.Checkpointer(DIR, async_save=False)
  try:
    ck.restore({"params": tree, "opt_state": tree}, step=1)
  except ckpt_lib.CheckpointError as e:
    print("ERROR", str(e)[:60])
  ck.close()
gc.collect()
time.sleep(1)
print("DONE")
"""


def test_a_failed_restore_prints_only_its_error(tmp_path):
  script = DAMAGED_RESTORE.replace("DIR", repr(str(tmp_path / "ck")))
  out = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
  )
  assert out.stdout.count("ERROR checkpoint") == 6 and "DONE" in out.stdout, out.stderr[-3000:]
  assert "Event loop is closed" not in out.stderr, out.stderr[-3000:]
  assert "Traceback" not in out.stderr and "never retrieved" not in out.stderr, out.stderr[-3000:]
