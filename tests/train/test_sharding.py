"""The same training code on 1 device and on a mesh of 8 fake CPU devices."""

import pytest
from fake_devices import run_script

SCRIPT = """
import json, logging, sys
import jax
import numpy as np
import optax
from flax import nnx
from configs import tiny
from jaxtok import sharding as shd
from jaxtok.train import prepare, trainer
from jaxtok.train.metrics import read_metrics
from jaxtok.train.tasks import get_task

compiles = []  # the train step's compilations, from JAX's own log
class Compiles(logging.Handler):
  def emit(self, record):
    if record.getMessage().startswith("Compiling jit(train_step)"):
      compiles.append(1)
logging.getLogger("jax").addHandler(Compiles())
jax.config.update("jax_log_compiles", True)

c = tiny.get_config()
c.data.data_dir, workdir = sys.argv[1], sys.argv[2]
c.mesh.update(data=int(sys.argv[3]), fsdp=int(sys.argv[4]), tensor=int(sys.argv[5]))
c.model.update(n_heads=4, n_kv_heads=4)  # heads divide the tensor axis
c.train.update(steps=6, log_every=3, eval_every=0, progress_bar=False)
r = trainer.train(c, workdir)
losses = read_metrics(workdir, "train/loss")

# Step 0 of a run: parameters built shard by shard equal the model built eagerly, and
# Adam's moments have their parameter's sharding.
mesh, rules = shd.from_config(c.mesh)
task = get_task(prepare.prepare(c, workdir))
_, params, _ = trainer.build_params(task, c, mesh, rules)
_, eager = nnx.split(task.build_model(nnx.Rngs(c.train.seed)))
pairs = zip(jax.tree.leaves(params), jax.tree.leaves(eager))
# jit may round an initialiser differently by an ulp
same_init = all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in pairs)
tx, _ = trainer.optimizer_for(c, 6)
opt_state = trainer.fresh_state(tx, params, mesh).opt_state
is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
adam = next(x for x in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(x))
want = [x.sharding.spec for x in jax.tree.leaves(params)]
moments = [[x.sharding.spec for x in jax.tree.leaves(m)] for m in (adam.mu, adam.nu)]
print("RESULT", json.dumps({"devices": jax.device_count(), "val_bpb": r["val_bpb"],
                            "losses": [losses[s] for s in sorted(losses)],
                            "train_step_compiles": len(compiles), "same_init": same_init,
                            "moments_sharded_as_params": moments == [want, want],
                            "sharded_params": sum(any(s) for s in want)}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  return tmp_path_factory.mktemp("runs")  # and the corpus they share


@pytest.fixture(scope="module")
def eight(runs):
  """The 6-step run on a 2x2x2 mesh of 8 fake devices (data x fsdp x tensor)."""
  return run(runs, "eight", (2, 2, 2), 8)


def run(tmp_path, name, mesh, devices):
  result, _ = run_script(SCRIPT, [tmp_path / "tfds", tmp_path / name, *mesh], devices)
  return result


def test_eight_device_mesh_matches_one_device(runs, eight):
  one = run(runs, "one", (1, 1, 1), 1)
  assert eight["devices"] == 8
  assert len(one["losses"]) == 6
  assert eight["losses"] == pytest.approx(one["losses"], rel=2e-4)
  assert eight["val_bpb"] == pytest.approx(one["val_bpb"], rel=2e-4)


def test_sharded_init_and_one_compile(eight):
  """On 2x2x2: parameters created directly with their shardings (equal to the eager
  model), Adam's moments sharded like them from step 0, one compilation of the train step."""
  assert eight["sharded_params"] > 0
  assert eight["same_init"]
  assert eight["moments_sharded_as_params"]
  assert eight["train_step_compiles"] == 1
