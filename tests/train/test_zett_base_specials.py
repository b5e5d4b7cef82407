"""One rule for the special tokens of a transfer, whichever entry point opens the base:
`experiments.transfer --base=smollm2` and `--hypernet=<workdir of a SmolLM2 hypernetwork>`
give a target's BOS the same embedding (SmolLM2's document separator, <|endoftext|>)."""

import numpy as np
import pytest

import jaxtok
from configs import zett_smollm2
from jaxtok.models import convert
from jaxtok.tokenizers import sources
from jaxtok.tokenizers.byte_view import ByteTokenizer
from jaxtok.tokenizers.targets import train_tokenizer
from jaxtok.train import zett

TEXT = ["The quick brown fox jumps over the lazy dog.", "def f(x):\n    return x + 1\n"] * 40


@pytest.fixture(scope="module")
def smollm2():
  path = sources.smollm2_gguf()
  if path is None:
    pytest.skip(sources.last_error["smollm2"])
  return convert.load_gguf_model(path)


def test_both_entry_points_open_the_base_with_the_same_specials(smollm2):
  _, gguf_tok = smollm2
  eot = gguf_tok.names.index("<|endoftext|>")
  assert gguf_tok.bos_id != eot  # the GGUF metadata names <|im_start|>: a chat-turn marker
  _, by_spec = zett.load_base_spec("smollm2")
  _, by_config = zett.load_base(zett_smollm2.get_config())
  for tok in (by_spec, by_config):
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (eot, eot, eot)


def test_transfer_copies_the_base_bos_from_either_entry_point(smollm2, tmp_path):
  model, gguf_tok = smollm2
  hf = train_tokenizer("bpe", TEXT, 300)
  hf.add_special_tokens(["<|endoftext|>"])
  target = ByteTokenizer(hf, bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>")
  target.save(str(tmp_path / "target.json"))
  hyper = tmp_path / "hypernet"  # a SmolLM2 hypernetwork's workdir: its config names the base
  hyper.mkdir()
  (hyper / "config.json").write_text(zett_smollm2.get_config().to_json())
  want = np.asarray(model.embedding_tables()[0][gguf_tok.names.index("<|endoftext|>")])
  for name, entry in (("base", dict(base="smollm2")), ("hypernet", dict(hypernet=str(hyper)))):
    out = str(tmp_path / name)
    kw = {"base": "", "hypernet": "", **entry}
    zett.transfer_job(tokenizer=str(tmp_path / "target.json"), out=out, method="fvt", **kw)
    moved, _ = jaxtok.restore(out)
    got = np.asarray(moved.embedding_tables()[0][target.bos_id])
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
