r"""Sample from a trained BLT or byte transformer, or from a Hugging Face checkpoint.

  python -m experiments.generate --workdir=workdirs/blt_entropy --prompt='def main(' \
      [--max_new_bytes=200 --temperature=0.8 --top_p=0.95 --uncached]
  python -m experiments.generate --checkpoint=hf:itazap/blt-1b-hf --prompt='The capital of' \
      [--param_dtype=bfloat16]
  python -m experiments.generate --checkpoint=hf:HuggingFaceTB/SmolLM2-135M --prompt='def '

BLTs decode with KV caches for the entropy model, local encoder, latent
transformer and local decoder; --uncached re-runs the whole prefix per byte
(the reference implementation's way) and gives the same bytes, slower.
--checkpoint reads the Hugging Face layout (a directory, or a hub id through
huggingface_hub's cache): a BLT with its entropy model, or a Llama / Mistral /
Qwen2 causal LM with its tokenizer (--max_new_bytes then counts tokens).
"""

import sys

from absl import flags, logging

from experiments import cli
from jaxtok import generate
from jaxtok.models import hf

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.")
_CHECKPOINT = flags.DEFINE_string(
  "checkpoint", None, "hf:<hub id or directory> in the Hugging Face layout (instead of --workdir)."
)
_PROMPT = flags.DEFINE_string("prompt", "", "Text to continue (UTF-8).")
_N = flags.DEFINE_integer("max_new_bytes", 200, "Bytes (tokens for token models) to generate.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_UNCACHED = flags.DEFINE_bool("uncached", False, "BLT: re-run the prefix per byte (reference).")
_PARAM_DTYPE = flags.DEFINE_enum(
  "param_dtype", "float32", ["float32", "bfloat16"], "--checkpoint: dtype of the weights."
)
flags.mark_flags_as_mutual_exclusive(["workdir", "checkpoint"], required=True)


def load():
  """(kind, model, patching config, entropy model, tokenizer)."""
  if _WORKDIR.value:
    return (*generate.load_for_generation(_WORKDIR.value), None)
  dt = _PARAM_DTYPE.value
  loaded = hf.load(_CHECKPOINT.value, param_dtype=dt, dtype=dt)
  if loaded.kind == "blt":
    return "blt", loaded.model, loaded.patching, loaded.entropy_model, None
  if loaded.tokenizer is None:
    raise ValueError(f"{loaded.directory} has no tokenizer.json: a token model needs one")
  return "tokens", hf.fit_vocab(loaded.model, loaded.tokenizer), None, None, loaded.tokenizer


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  kind, model, pcfg, em, tok = load()
  prompt = _PROMPT.value.encode()
  kw = dict(temperature=_TEMPERATURE.value, seed=_SEED.value)
  if kind == "tokens":
    out = generate.generate_text(model, tok, prompt, max_new_tokens=_N.value, **kw)
  elif kind == "transformer":
    out = generate.generate_transformer(model, prompt, _N.value, top_p=_TOP_P.value, **kw)
  else:
    fn = generate.generate_blt_uncached if _UNCACHED.value else generate.generate_blt
    out = fn(model, pcfg, prompt, _N.value, entropy_model=em, top_p=_TOP_P.value, **kw)
  sys.stdout.write(_PROMPT.value + out.decode("utf-8", errors="replace") + "\n")


if __name__ == "__main__":
  cli.run(main)
