r"""Training-step throughput and model-FLOPs utilisation (MFU) on this machine.

  python bench/train_throughput.py [--config=configs/entropy_model.py] [--repeats=5]

Measures, interleaved in one run so machine noise hits both alike:
  * the jitted train step on a fixed device batch (bytes/s, model FLOP/s),
  * the same step fed by the real input pipeline (packing + prefetch thread),
  * a large jnp matmul (the achievable FLOP/s of this device),
  * (a transformer config, torch installed) the same shapes in plain PyTorch eager
    (bench/torch_reference.py: causal sdpa, AdamW) on the same batches,
and prints MFU = model FLOP/s / matmul FLOP/s and the jaxtok / PyTorch bytes/s ratio.
Model FLOPs are jaxtok.models.flops (6N-style, causal attention counted as the keys
actually visible). The load average is printed before and after: numbers from a busy
machine are not comparable (PyTorch's threads degrade far more than XLA's under load).
"""

import json
import os
import statistics
import sys
import tempfile
import time

# The repository root replaces this folder on sys.path: bench/kernels.py would shadow the
# `kernels` package that transformers looks for.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p) != _HERE]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bench import torch_reference  # noqa: E402
from jaxtok import sharding as shd  # noqa: E402
from jaxtok.data import packing  # noqa: E402
from jaxtok.models import workdir as workdir_lib  # noqa: E402
from jaxtok.models.flops import count_params  # noqa: E402
from jaxtok.train import prepare, trainer  # noqa: E402
from jaxtok.train.steps import make_train_step  # noqa: E402
from jaxtok.train.task import HostBatches  # noqa: E402
from jaxtok.train.tasks import get_task  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/entropy_model.py", "Config file.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved measurement rounds.")
_STEPS = flags.DEFINE_integer("steps", 4, "Train steps per round.")
_MATMUL = flags.DEFINE_integer("matmul", 2048, "Side of the square reference matmul.")
_PROFILE = flags.DEFINE_string("profile_dir", "", "If set, write a jax.profiler trace here.")
_JSON = flags.DEFINE_string("json", "", "If set, also write the numbers to this JSON file.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the same shapes in PyTorch eager.")


def timed(fn, n):
  t0 = time.perf_counter()
  out = None
  for _ in range(n):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / n


def torch_arm(config, host_batch, bytes_per_step):
  """The model's shapes in plain PyTorch, or None with the reason printed."""
  mcfg = workdir_lib.model_config(config)
  why_not = torch_reference.available() if _TORCH.value else "--notorch"
  if why_not is None and config.model.get("name", "transformer") != "transformer":
    why_not = f"no PyTorch twin of a {config.model.name!r} model"
  if why_not is None and (mcfg.tie_embeddings or mcfg.head_dim or mcfg.qkv_bias):
    why_not = "the PyTorch twin has head_dim = d_model / n_heads, no biases, an untied head"
  if why_not is not None:
    print(f"PyTorch baseline skipped: {why_not}")
    return None
  model = torch_reference.byte_lm(
    *(mcfg.vocab_size, mcfg.d_model, mcfg.n_layers, mcfg.n_heads, mcfg.num_kv_heads),
    *(mcfg.hidden_dim, mcfg.rope_theta),
  )
  batches = torch_reference.torch_batches([host_batch])
  return torch_reference.TorchArm("PyTorch eager", model, batches, bytes_per_step)


def main(argv):
  del argv
  load_before = os.getloadavg()
  print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
  config = prepare.prepare(_CONFIG.value, tempfile.mkdtemp(prefix="jaxtok-bench-"))
  mesh, rules = shd.from_config(config.mesh)
  task = get_task(config, mesh=mesh, rules=rules)
  graphdef, params, _ = trainer.build_params(task, config, mesh, rules)
  tx, schedule = trainer.optimizer_for(config, config.train.steps)
  state = trainer.fresh_state(tx, params, mesh)
  step_fn = make_train_step(
    graphdef, tx, schedule, task.loss_fn, grad_accum=config.train.grad_accum
  )
  _, it = trainer.make_batches(task, config, "train", seed=0, repeat=True, shuffle=True)
  host = HostBatches(it, task.host_transform)
  sharding = shd.batch_sharding(mesh, rules)
  host_batch = next(host)
  fixed = trainer.to_device(host_batch, sharding)
  bytes_per_step = (
    float(jnp.sum(fixed["targets"] >= 4))
    if "target_bytes" not in fixed
    else (float(jnp.sum(fixed["target_bytes"])))
  )
  flops_per_step = task.flops.train * bytes_per_step

  holder = {"state": state}

  def one_step(batch):
    holder["state"], m = step_fn(holder["state"], batch)
    return m["loss"]

  prefetch = packing.Prefetcher(host, size=config.data.prefetch)
  stream = iter(prefetch)

  def pipeline_step():
    batch, _ = next(stream)
    return one_step(trainer.to_device(batch, sharding))

  n = _MATMUL.value
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)

  jax.block_until_ready(one_step(fixed))  # compile
  jax.block_until_ready(matmul(a))
  if _PROFILE.value:
    jax.profiler.start_trace(_PROFILE.value)
    timed(lambda: one_step(fixed), 2)
    jax.profiler.stop_trace()

  torch = torch_arm(config, host_batch, bytes_per_step)
  fixed_s, pipe_s, mm_s = [], [], []
  for _ in range(_REPEATS.value):
    fixed_s.append(timed(lambda: one_step(fixed), _STEPS.value))
    pipe_s.append(timed(pipeline_step, _STEPS.value))
    mm_s.append(timed(lambda: matmul(a), 5))
    if torch is not None:
      torch.round(_STEPS.value)
  prefetch.close()
  load_after = os.getloadavg()

  step = statistics.median(fixed_s)
  pipe = statistics.median(pipe_s)
  mm_flops = 2 * n**3 / statistics.median(mm_s)
  model_flops = flops_per_step / step
  print(
    f"config: {config.model.name} d={config.model.get('d_model')} "
    f"layers={config.model.get('n_layers')} batch={config.data.batch_size}x"
    f"{config.data.seq_len}; {jax.device_count()} x {jax.devices()[0].device_kind}"
  )
  print(
    f"train step (fixed batch):     {step * 1e3:8.1f} ms   {bytes_per_step / step:10.0f} bytes/s"
  )
  print(
    f"train step (input pipeline):  {pipe * 1e3:8.1f} ms   {bytes_per_step / pipe:10.0f} bytes/s"
    f"   pipeline/fixed time ratio {pipe / step:.3f}"
  )
  print(
    f"model FLOP/s:                 {model_flops / 1e9:8.1f} GFLOP/s "
    f"({task.flops.train:.3g} train FLOPs/byte)"
  )
  print(f"{n}x{n} matmul FLOP/s:        {mm_flops / 1e9:8.1f} GFLOP/s")
  print(f"MFU (model / matmul FLOP/s):  {model_flops / mm_flops:8.3f}")
  torch_rate = None
  if torch is not None:
    t_step = statistics.median(torch.times)
    torch_rate = bytes_per_step / t_step
    print(
      f"PyTorch eager, same shapes:   {t_step * 1e3:8.1f} ms   {torch_rate:10.0f} bytes/s"
      f"   ({torch_reference.threads()} threads, {torch.params / 1e6:.3f}M params; "
      f"jaxtok {count_params(params) / 1e6:.3f}M)"
    )
    print(f"jaxtok / PyTorch bytes/s:     {bytes_per_step / step / torch_rate:8.2f}x")
  print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
  if _JSON.value:
    out = dict(
      config=f"{config.model.name} d={config.model.get('d_model')} dtype={config.model.dtype}",
      bytes_per_s=bytes_per_step / step,
      pipeline_bytes_per_s=bytes_per_step / pipe,
      model_gflops=model_flops / 1e9,
      matmul_gflops=mm_flops / 1e9,
      mfu=model_flops / mm_flops,
      load_average=load_after,
      load_before=load_before,
    )
    if torch_rate is not None:
      out.update(torch_bytes_per_s=torch_rate, ratio_vs_torch=bytes_per_step / step / torch_rate)
    with open(_JSON.value, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  app.run(main)
