"""The PyTorch baselines get what the jaxtok arms get: the rows' own patch lengths (BLT),
the same parameter count (byte LM); the BLT benchmark prints its PyTorch ratio (slow)."""

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bench import torch_reference as tr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hf_patch_lengths_count_the_bytes_of_each_patch():
  starts = np.array([[1, 1, 0, 0, 1, 0, 1, 1, 0], [1, 0, 1, 0, 0, 0, 0, 0, 0]])  # [B, T+1]
  seg = np.array([[1] * 8, [1, 1, 1, 1, 1, 0, 0, 0]])  # row 1: 3 padding bytes
  lengths = tr.hf_patch_lengths(starts, seg)
  # row 0: patches start at 0, 1, 4, 6, 7; row 1: at 0, 2 (padding joins the last patch)
  np.testing.assert_array_equal(lengths, [[1, 3, 2, 1, 1], [2, 6, 0, 0, 0]])
  assert (lengths.sum(1) == 8).all()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_torch_byte_lm_has_the_jaxtok_transformers_parameter_count():
  from flax import nnx

  from jaxtok.models.flops import count_params
  from jaxtok.models.transformer import Transformer, TransformerConfig

  cfg = TransformerConfig(d_model=48, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=96)
  model = tr.byte_lm(260, 48, 2, 4, 2, 96, 10000.0)
  jx = count_params(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param))
  assert sum(p.numel() for p in model.parameters()) == jx


def run_blt_bench(overrides, *flags):
  """bench/blt_throughput.py, one round of one step, with BLT config overrides."""
  out = subprocess.run(
    [sys.executable, "bench/blt_throughput.py", *flags, "--steps=1", "--rounds=1"]
    + [f"--set={s}" for s in overrides],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=900,
    env={**os.environ, "PYTHONPATH": ROOT},
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="no transformers")
def test_blt_throughput_bench_prints_the_pytorch_ratio(tmp_path):
  small = [
    "model.d_local=32",
    "model.d_global=64",
    "model.n_layers_global=1",
    "model.hash_vocab=64",
    "data.seq_len=64",
    "data.batch_size=2",
    "patching.max_patches=32",
  ]
  out = run_blt_bench(small)
  assert re.search(r"BltForCausalLM \(torch\)\s+\d+ bytes/s", out.stdout), out.stdout
  assert re.search(r"jaxtok BLT / BltForCausalLM \(torch\) training bytes/s: [\d.]+x", out.stdout)
  assert "load average before" in out.stdout and "load average after" in out.stdout


@pytest.mark.slow
def test_blt_input_path_bench_compares_one_and_two_round_trips(tmp_path):
  out = run_blt_bench(
    ("model.d_local=32", "model.d_global=64", "data.batch_size=2"), "--input_path"
  )
  assert "same patch starts: True" in out.stdout, out.stdout
  assert re.search(r"one / two round trips, training bytes/s: [\d.]+x", out.stdout), out.stdout
