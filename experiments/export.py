r"""Write a jaxtok workdir in the Hugging Face layout (loadable by transformers).

  python -m experiments.export --workdir=workdirs/smol_gpt2 --out=exported/smol_gpt2 \
      [--dtype=bfloat16]

A token or byte transformer becomes a Llama / Mistral / Qwen2 directory (with
its tokenizer.json when the workdir has one: a ZeTT transfer's new tokenizer);
a BLT becomes a `BltForCausalLM` with its entropy model as the patcher (it must
use the reference switches: `python -m experiments.differences`). The output is
written to a temporary directory and renamed into place when complete; an
existing non-empty --out is refused.
"""

from absl import app, flags, logging

from jaxtok import paths
from jaxtok.models import entropy_model, hf
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.blt import BLT
from jaxtok.tokenizers.load import load_tokenizer

_WORKDIR = flags.DEFINE_string("workdir", None, "A jaxtok workdir.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory (new or empty).", required=True)
_DTYPE = flags.DEFINE_enum(
  "dtype", None, ["float32", "bfloat16", "float16"], "Weight dtype (default: the model's)."
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  model, _ = workdir_lib.restore(_WORKDIR.value, step=_STEP.value)
  if isinstance(model, BLT):
    pcfg, em = entropy_model.patching_from_workdir(_WORKDIR.value)
    out = hf.save_blt(model, pcfg, em, _OUT.value, dtype=_DTYPE.value)
  else:
    tok_path = workdir_lib.tokenizer_path(_WORKDIR.value)
    tok = load_tokenizer(tok_path) if paths.exists(tok_path) else None
    out = hf.save_transformer(model, _OUT.value, tokenizer=tok, dtype=_DTYPE.value)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
