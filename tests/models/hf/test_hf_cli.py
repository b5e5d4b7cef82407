"""The command lines around the Hugging Face layout, end to end on tiny checkpoints:
generate --checkpoint, transfer --base=hf:, export --workdir, differences."""

import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import torch
import transformers
from conftest import blt_config, save_blt
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import jaxtok
from jaxtok import generate
from jaxtok.models import hf, reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run(module, *flags):
  proc = subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", *flags],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_generate_from_an_hf_blt_checkpoint(tmp_path):
  save_blt(tmp_path / "blt", blt_config())
  out = run(
    "generate", f"--checkpoint=hf:{tmp_path / 'blt'}", "--prompt=The quick", "--max_new_bytes=24"
  )
  loaded = hf.load(str(tmp_path / "blt"))
  want = generate.generate_blt(
    loaded.model, loaded.patching, b"The quick", 24, entropy_model=loaded.entropy_model
  )
  assert out == "The quick" + want.decode("utf-8", errors="replace") + "\n"


def test_transfer_from_an_hf_base_then_export_loads_in_transformers(tmp_path):
  base = tmp_path / "base"
  cfg = transformers.LlamaConfig(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=2,
    bos_token_id=0,
    eos_token_id=1,
  )
  torch.manual_seed(0)
  transformers.LlamaForCausalLM(cfg).save_pretrained(base)
  tok_file = _bpe(tmp_path, 300)
  os.replace(tok_file, base / "tokenizer.json")
  target = _bpe(tmp_path, 280)
  work, out = tmp_path / "moved", tmp_path / "exported"
  run(
    "transfer",
    f"--base=hf:{base}",
    "--method=fvt",
    f"--tokenizer={target}",
    f"--out={work}",
    "--prompt=",
  )
  run("export", f"--workdir={work}", f"--out={out}")
  moved, _ = jaxtok.restore(str(work))
  ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  tokens = np.arange(2, 40)[None]
  with torch.no_grad():
    want = ref(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(np.asarray(moved(jnp.asarray(tokens))), want, atol=1e-4, rtol=0)


def _bpe(tmp_path, size):
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=size,
    special_tokens=["<s>", "</s>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  tok.train_from_iterator([pathlib.Path(hf.__file__).read_text()], trainer)
  path = tmp_path / f"bpe{size}.json"
  tok.save(str(path))
  return path


def test_readme_differences_table_is_what_the_command_prints():
  out = run("differences")
  assert out == reference.markdown()
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  assert "python -m experiments.differences" in readme
  assert out in readme, "README's table is stale: paste `python -m experiments.differences`"
