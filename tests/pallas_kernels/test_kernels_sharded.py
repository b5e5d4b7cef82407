"""The kernels run per shard under shard_map on 8 (fake CPU) devices."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P
  from jaxtok import sharding as shd
  from jaxtok.nn import pooling
  from jaxtok.nn.attention import Mask, attention

  assert jax.device_count() == 8
  mesh = shd.make_mesh(data=2, fsdp=2, tensor=2)
  rng = np.random.default_rng(0)
  heads = NamedSharding(mesh, P(("data", "fsdp"), None, "tensor", None))
  rows = NamedSharding(mesh, P(("data", "fsdp")))
  q = jax.device_put(rng.normal(size=(4, 40, 4, 8)).astype(np.float32), heads)
  k = jax.device_put(rng.normal(size=(4, 40, 2, 8)).astype(np.float32), heads)
  seg = jax.device_put(np.sort(rng.integers(1, 4, size=(4, 40)), 1).astype(np.int32), rows)
  x = jax.device_put(rng.normal(size=(4, 40, 8)).astype(np.float32), rows)

  def loss(q, k, x, impl):
    out = attention(q, k, k, Mask(q_segment_ids=seg, kv_segment_ids=seg), impl=impl)
    pooled = pooling.segment_pool(x, seg, 5, "max", impl=impl)
    return (out**2).sum() + (pooled**2).sum()

  f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)
  want = f(q, k, x, "xla")
  with jax.set_mesh(mesh):
    got = f(q, k, x, "pallas")
    jaxpr = str(jax.make_jaxpr(f, static_argnums=3)(q, k, x, "pallas"))
    hlo = f.lower(q, k, x, "pallas").compile().as_text()
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)
  assert jaxpr.count("shard_map") >= 3, "kernels not under shard_map"
  assert "all-gather" not in hlo, "operands were gathered around the kernels"
  print("OK")
  """
)


def test_kernels_run_per_shard_on_8_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run(
    [sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]
