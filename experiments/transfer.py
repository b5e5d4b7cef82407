r"""Move a base LM to a new tokenizer with embeddings from a hypernetwork (or a baseline).

  python -m experiments.transfer --hypernet=workdirs/zett_tiny/hypernet \
      --tokenizer=gguf:gpt-2 --out=workdirs/zett_tiny/gpt2

--base defaults to the hypernetwork's own base (its config); it can name a jaxtok workdir, a
GGUF ("smollm2" or a path) or a Hugging Face Llama / Mistral / Qwen2 checkpoint with its
tokenizer ("hf:<hub id or directory>", e.g. --base=hf:HuggingFaceTB/SmolLM2-135M).
--tokenizer is a tokenizer.json, .model, .gguf, a directory, or a spec such as "gguf:gpt-2",
"bpe:2048" or "hf:Qwen/Qwen2.5-0.5B". The result loads with `jaxtok.restore(out)`;
`python -m experiments.export --workdir=OUT --out=DIR` writes it in the Hugging Face layout.
"""

from absl import flags, logging

import jaxtok
from experiments import cli
from jaxtok import generate
from jaxtok.models import workdir as workdir_lib
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.train import zett

_BASE = flags.DEFINE_string(
  "base", "", "jaxtok workdir, GGUF or hf:<id or dir> (default: the hypernet's base)."
)
_HYPERNET = flags.DEFINE_string(
  "hypernet", "", "hypernetwork workdir (needed for --method=hypernet)."
)
_TOKENIZER = flags.DEFINE_string(
  "tokenizer", None, "target tokenizer (file or spec).", required=True
)
_OUT = flags.DEFINE_string("out", None, "output workdir.", required=True)
_METHOD = flags.DEFINE_enum(
  "method", "hypernet", ["hypernet", "fvt", "focus", "lexical", "random"], "embedding init."
)
_PROMPT = flags.DEFINE_string("prompt", "def ", "prompt for the generation check ('' to skip).")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  res = zett.transfer_job(
    base=_BASE.value,
    hypernet=_HYPERNET.value,
    tokenizer=_TOKENIZER.value,
    out=_OUT.value,
    method=_METHOD.value,
  )
  print(f"wrote {res['out']}: {res['vocab']} tokens ({res['target']}), from {_METHOD.value}")
  if _PROMPT.value:
    model, _ = jaxtok.restore(res["out"])
    tok = load_tokenizer(workdir_lib.tokenizer_path(res["out"]))
    text = generate.generate_text(model, tok, _PROMPT.value)
    print(f"generation check: {_PROMPT.value!r} -> {text.decode('utf-8', errors='replace')!r}")


if __name__ == "__main__":
  cli.run(main)
