"""experiments.generate: one prompt streamed, --batch_file in batches, throughput on stderr."""

import numpy as np
import pytest
from absl import flags
from flax import nnx

import jaxtok
from experiments import generate as cli
from jaxtok import generation
from jaxtok.models.transformer import Transformer, TransformerConfig
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.targets import train_tokenizer


@pytest.fixture
def model(monkeypatch):
  cfg = TransformerConfig(d_model=32, n_layers=2, n_heads=2, mlp_dim=64)
  m = Transformer(cfg, rngs=nnx.Rngs(3))
  monkeypatch.setattr(
    generation, "load_for_generation", lambda workdir: ("transformer", m, None, None)
  )
  yield m
  flags.FLAGS.unparse_flags()


def run(argv):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["generate", "--workdir=unused", *argv])
  cli.main([])


def test_one_prompt_is_streamed(model, capsys):
  run(["--prompt=def f(", "--max_new_bytes=20", "--chunk=4", "--temperature=0.9", "--seed=4"])
  out, err = capsys.readouterr()
  want = jaxtok.generate(model, b"def f(", max_new_bytes=20, temperature=0.9, seed=4)
  assert out == "def f(" + want.text.decode("utf-8", errors="replace") + "\n"
  assert "bytes/s" in err and "ids/s" in err


def test_batch_file_prompts_are_generated_in_batches(model, capsys, tmp_path):
  prompts = [b"abc", b"\xff\xfe raw bytes", b"x = 1"]
  path = tmp_path / "prompts.txt"
  path.write_bytes(b"\n".join(prompts) + b"\n")
  run([f"--batch_file={path}", "--batch_size=2", "--max_new_bytes=6", "--stop=zz"])
  out, _ = capsys.readouterr()
  want = jaxtok.generate(model, prompts[:2], max_new_bytes=6, stop=["zz"])
  want += jaxtok.generate(model, prompts[2:], max_new_bytes=6, stop=["zz"])
  for i, (p, w) in enumerate(zip(prompts, want)):
    shown = (p + w.text).decode("utf-8", errors="replace")
    assert f"=== [{i}] ({w.stop_reason})\n{shown}\n" in out
  assert np.all([len(w.text) for w in want])


def test_a_token_workdir_generates_with_its_own_tokenizer(monkeypatch, tmp_path, capsys):
  """A token LM's workdir (e.g. ZeTT-transferred) decodes tokens of its tokenizer.json."""
  tok = ByteTokenizer(train_tokenizer("bpe", ["Simple is better than complex."] * 5, 300))
  tok.save(str(tmp_path / "tokenizer.json"))
  cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, mlp_dim=64)
  m = Transformer(cfg, rngs=nnx.Rngs(5))
  monkeypatch.setattr(generation, "load_for_generation", lambda workdir: ("tokens", m, None, None))
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["generate", f"--workdir={tmp_path}", "--prompt=Simple is", "--max_new_bytes=6"])
  try:
    cli.main([])
  finally:
    flags.FLAGS.unparse_flags()
  want = jaxtok.generate(m, "Simple is", max_new_tokens=6, tokenizer=tok)
  assert capsys.readouterr().out == "Simple is" + want.text.decode("utf-8", errors="replace") + "\n"
