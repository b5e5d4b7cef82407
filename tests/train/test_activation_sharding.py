"""Activation sharding on a 2x2x2 mesh of 8 fake CPU devices, the rules as config, the
device mesh (DCN data axis), and a ZeTT base restored straight onto the mesh."""

from types import SimpleNamespace

import numpy as np
import pytest
from fake_devices import run_script

from configs import tiny
from jaxtok import sharding as shd
from jaxtok.train import trainer
from jaxtok.train.metrics import read_metrics

REMAT_WARNING = "Involuntary full rematerialization"  # printed by XLA's SPMD partitioner

CONFIGS = """
import sysconfig
from configs import tiny, tiny_blt

def config(kind, data_dir, mesh):
  c = (tiny if kind == "transformer" else tiny_blt).get_config()
  stdlib = sysconfig.get_paths()["stdlib"]
  c.data.update(name=f"files:{stdlib}/json/*.py", data_dir=data_dir, seq_len=64,
                eval_batches=1, val_fraction=0.1)
  c.mesh.update(data=mesh[0], fsdp=mesh[1], tensor=mesh[2])
  c.train.update(steps=3, log_every=1, eval_every=0, ckpt_every=0, progress_bar=False)
  return c
"""

SCRIPT = (
  CONFIGS
  + """
import json, sys
import jax
import numpy as np
from flax import nnx
from jaxtok import sharding as shd
from jaxtok.models import workdir as workdir_lib
from jaxtok.train import trainer
from jaxtok.train.metrics import read_metrics

data_dir, out = sys.argv[1], sys.argv[2]
result = {"devices": jax.device_count()}
for kind in ("transformer", "blt"):
  workdir = f"{out}/{kind}"
  trainer.train(config(kind, data_dir, (2, 2, 2)), workdir)
  losses = read_metrics(workdir, "train/loss")
  result[kind] = [losses[s] for s in sorted(losses)]

# The transformer's workdir restored as a (ZeTT) base onto the mesh, and on one device.
c = config("transformer", data_dir, (2, 2, 2))
mesh, rules = shd.from_config(c.mesh)
model, _ = workdir_lib.restore(f"{out}/transformer", mesh=mesh, rules=rules)
params = nnx.state(model, nnx.Param)
want = jax.tree.leaves(shd.state_shardings(params, mesh, rules))
got = [x.sharding for x in jax.tree.leaves(params)]
one = jax.tree.leaves(nnx.state(workdir_lib.restore(f"{out}/transformer")[0], nnx.Param))
result["restored_on_mesh"] = got == want and sum(len(s.device_set) > 1 for s in got) > 0
result["sharded_leaves"] = sum(any(s.spec) for s in got)
result["restored_equal"] = all(
  np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(params), one)
)

# mesh.dcn_data=2 on one process: the data axis is two contiguous groups of devices.
grid = shd.make_mesh(4, 1, 2, dcn_data=2).devices
result["dcn_grid"] = [[d.id for d in half.ravel()] for half in np.split(grid, 2, axis=0)]
print("RESULT", json.dumps(result))
"""
)


@pytest.fixture(scope="module")
def eight(data_dir, tmp_path_factory):
  """Both tiny models trained 3 steps on 2x2x2 (data x fsdp x tensor) in one subprocess."""
  return run_script(SCRIPT, [data_dir, tmp_path_factory.mktemp("eight")], 8)


def one_device_losses(kind, data_dir, workdir):
  namespace = {}
  exec(CONFIGS, namespace)
  trainer.train(namespace["config"](kind, data_dir, (1, 1, 1)), str(workdir))
  losses = read_metrics(str(workdir), "train/loss")
  return [losses[s] for s in sorted(losses)]


def test_no_involuntary_rematerialization(eight):
  """Constrained activations leave XLA no layout it can only reach by gathering everything
  (before them, the BLT's decoder latent projection and, once the residual stream is pinned,
  every embedding lookup were fully rematerialized)."""
  result, stderr = eight
  assert result["devices"] == 8
  assert REMAT_WARNING not in stderr


@pytest.mark.parametrize("kind", ["transformer", "blt"])
def test_2x2x2_losses_equal_one_device(eight, kind, data_dir, tmp_path):
  one = one_device_losses(kind, data_dir, tmp_path / kind)
  assert len(one) == 3
  assert eight[0][kind][0] == pytest.approx(one[0], rel=1e-5)  # the same forward
  # then updates that differ by the reduction order (as in test_sharding.py)
  assert eight[0][kind] == pytest.approx(one, rel=2e-4)


def test_zett_base_restored_on_the_mesh(eight):
  """A workdir restored with a mesh: every parameter with its mesh sharding (state_shardings),
  read shard by shard, equal to the one-device restore."""
  result, _ = eight
  assert result["restored_on_mesh"]
  assert result["sharded_leaves"] > 0
  assert result["restored_equal"]


def test_dcn_data_axis_groups_contiguous_devices(eight):
  assert eight[0]["dcn_grid"] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def fake_devices(n, process_of):
  kw = dict(platform="cpu", device_kind="cpu")
  return [SimpleNamespace(id=i, process_index=process_of(i), **kw) for i in range(n)]


@pytest.mark.parametrize("process_of", [lambda i: i // 4, lambda i: i % 2])
def test_dcn_data_over_processes(process_of):
  """Without a slice index, processes are the DCN groups: each data half is one process's
  devices, whatever order the devices are listed in."""
  grid = shd.device_grid(2, 2, 2, fake_devices(8, process_of), dcn_data=2)
  assert grid.shape == (2, 2, 2)
  for p, half in enumerate(grid):
    assert {d.process_index for d in half.ravel()} == {p}


def test_mesh_sizes_that_do_not_divide_name_the_field():
  with pytest.raises(shd.MeshConfigError, match=r"config\.mesh\.dcn_data"):
    shd.make_mesh(4, 1, 2, devices=fake_devices(8, lambda i: 0), dcn_data=3)
  with pytest.raises(shd.MeshConfigError, match=r"config\.mesh.*fsdp=3"):
    shd.make_mesh(-1, 3, 1, devices=fake_devices(8, lambda i: 0))


def test_rules_presets_and_overrides():
  assert shd.parse_rules("default") == shd.RULES
  fsdp = dict(shd.parse_rules("fsdp,seq=tensor"))
  assert fsdp["batch"] == ("data", "fsdp", "tensor") and fsdp["seq"] == "tensor"
  table = dict(shd.parse_rules("batch=data+fsdp, mlp=none"))
  assert table["batch"] == ("data", "fsdp") and table["mlp"] is None
  assert table["heads"] == "tensor"  # the rest from "default"
  # an axis used by an earlier dimension is not used again: activations' embed stays whole
  assert shd.logical_to_mesh(("batch", "seq", "embed")) == shd.P(("data", "fsdp"), None, None)
  for preset in shd.PRESETS:  # every preset maps every logical name onto mesh axes
    assert {n for n, _ in shd.PRESETS[preset]} == set(shd.LOGICAL_AXES)


@pytest.mark.parametrize(
  "rules, why",
  [
    ("default,sequence=tensor", "unknown logical axis 'sequence'"),
    ("batch=data+model", "unknown mesh axis"),
    ("zero3", "unknown preset 'zero3'"),
  ],
)
def test_bad_rules_name_the_field(rules, why):
  c = tiny.get_config()
  c.mesh.rules = rules
  with pytest.raises(ValueError, match=r"config\.mesh\.rules") as e:
    trainer.validate_config(c)
  assert why in str(e.value)


def test_constrain_without_a_mesh_is_the_identity():
  x = np.arange(6.0).reshape(1, 2, 3)
  assert shd.constrain(x, ("batch", "seq", "embed")) is x
