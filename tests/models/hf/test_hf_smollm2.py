"""SmolLM2-135M's real weights: jaxtok's GGUF conversion against transformers' GGUF loader, and
SmolLM2 moved to a new tokenizer (ZeTT, FVT init), exported, reloaded by transformers:
same logits, same greedy tokens."""

import os
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import jaxtok
from jaxtok import generate
from jaxtok.models import hf, transfer
from jaxtok.models.convert import load_gguf_model
from jaxtok.tokenizers import sources
from jaxtok.tokenizers.byte_view import ByteTokenizer

TEXT = "The capital of France is Paris. It is known for the Eiffel Tower and fine food."


@pytest.fixture(scope="module")
def smollm2():
  path = sources.smollm2_gguf()
  assert path, sources.SMOLLM2_HINT  # the README's test command installs it
  model, tok = load_gguf_model(path)
  ref = transformers.AutoModelForCausalLM.from_pretrained(
    os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
  ).eval()
  return model, tok, ref


def test_gguf_conversion_equals_transformers(smollm2):
  model, tok, ref = smollm2
  ids = np.concatenate([[tok.bos_id], tok.encode(TEXT)])
  with torch.no_grad():
    want = ref(torch.tensor(ids[None])).logits[0].numpy()
  got = np.asarray(model(jnp.asarray(ids[None], jnp.int32)))[0, :, : want.shape[-1]]
  assert np.abs(want).max() > 10
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)


def test_zett_transferred_smollm2_exports_and_generates_the_same_in_transformers(smollm2, tmp_path):
  model, base_tok, _ = smollm2
  bpe = Tokenizer(models.BPE())
  bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  bpe.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=600, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
  )
  bpe.train_from_iterator([TEXT * 3, pathlib.Path(transfer.__file__).read_text()], trainer)
  target = ByteTokenizer(bpe, name="bpe600")
  work = transfer.transfer_with("fvt", model, base_tok, target, str(tmp_path / "work"))
  moved, _ = jaxtok.restore(work)
  out = hf.save_transformer(moved, str(tmp_path / "hf"), tokenizer=target, dtype="float32")
  ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  prompt = "The capital of France is"
  got = generate.generate_text(moved, target, prompt, max_new_tokens=64)
  ids = np.concatenate([[target.bos_id], target.encode(prompt)])
  never = [i for i in range(target.vocab_size) if not target.lengths[i] and i != target.eos_id]
  with torch.no_grad():
    want = ref.generate(
      torch.tensor(ids[None]),
      max_new_tokens=64,
      do_sample=False,
      suppress_tokens=never,
      eos_token_id=target.eos_id,
      pad_token_id=target.pad_id,
    )[0, len(ids) :].tolist()
  want = [i for i in want if i != target.eos_id]
  assert len(want) > 16
  assert got == target.decode(want)
  # ...and transformers' own tokenizer of the export spells the prompt with the same ids.
  hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "tokenizer.json"))
  assert hf_tok.encode(prompt) == target.encode(prompt).tolist()
