r"""Sample from a trained BLT or byte transformer, or a Hugging Face checkpoint, streamed.

  python -m experiments.generate --workdir=workdirs/blt_entropy --prompt='def main(' \
      [--max_new_bytes=200 --temperature=0.8 --top_p=0.95 --top_k=0 --stop='\n\n' --uncached]
  python -m experiments.generate --workdir=... --batch_file=prompts.txt [--batch_size=8]
  python -m experiments.generate --checkpoint=hf:itazap/blt-1b-hf --prompt='The capital of' \
      [--param_dtype=bfloat16]
  python -m experiments.generate --checkpoint=hf:HuggingFaceTB/SmolLM2-135M --prompt='def '

One prompt is streamed to stdout as the bytes come (invalid UTF-8 is shown
with U+FFFD; the bytes themselves are kept exact). --batch_file holds one
prompt per line, generated --batch_size at a time; each result is printed
when its batch ends. Throughput (bytes/s, ids/s; compilation included on the
first batch) goes to stderr. BLTs decode with KV caches for the entropy
model, local encoder, latent transformer and local decoder, after a one-forward
prefill of the prompt; --uncached re-runs the whole prefix per byte (the
reference implementation's way) and gives the same bytes, slower.
--checkpoint reads the Hugging Face layout (a directory, or a hub id through
huggingface_hub's cache): a BLT with its entropy model, or a Llama / Mistral /
Qwen2 causal LM with its tokenizer (--max_new_bytes then counts tokens).
"""

import codecs
import sys
import time

from absl import app, flags, logging

from experiments import cli
from jaxtok import generation
from jaxtok.generation.sampling import row_keys
from jaxtok.models import hf
from jaxtok.models import workdir as workdir_lib
from jaxtok.tokenizers.load import load_tokenizer

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.")
_CHECKPOINT = flags.DEFINE_string(
  "checkpoint", None, "hf:<hub id or directory> in the Hugging Face layout (instead of --workdir)."
)
_PROMPT = flags.DEFINE_string("prompt", "", "Text to continue (UTF-8).")
_BATCH_FILE = flags.DEFINE_string("batch_file", None, "A file with one prompt per line.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Prompts decoded together (--batch_file).")
_N = flags.DEFINE_integer(
  "max_new_bytes", 200, "Bytes (tokens for token models) to generate; stops early at EOS."
)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass, in (0, 1].")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Keep the k most likely bytes (0 = all).")
_STOP = flags.DEFINE_multi_string("stop", [], "A stop string (the output ends after it).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed (row b of a batch: fold_in(seed, b)).")
_CHUNK = flags.DEFINE_integer("chunk", 16, "Bytes per on-device decode call (streaming step).")
_UNCACHED = flags.DEFINE_bool("uncached", False, "BLT: re-run the prefix per byte (reference).")
_PARAM_DTYPE = flags.DEFINE_enum(
  "param_dtype", "float32", ["float32", "bfloat16"], "--checkpoint: dtype of the weights."
)
flags.mark_flags_as_mutual_exclusive(["workdir", "checkpoint"], required=True)


def load() -> generation.Generator:
  """The generator of the model the flags name."""
  tok = None
  if _WORKDIR.value:
    kind, model, pcfg, em = generation.load_for_generation(_WORKDIR.value)
    if kind == "tokens":
      tok = load_tokenizer(workdir_lib.tokenizer_path(_WORKDIR.value))
  else:
    dt = _PARAM_DTYPE.value
    loaded = hf.load(_CHECKPOINT.value, param_dtype=dt, dtype=dt)
    kind, model, pcfg, em = "blt", loaded.model, loaded.patching, loaded.entropy_model
    if loaded.kind != "blt":
      if loaded.tokenizer is None:
        raise ValueError(f"{loaded.directory} has no tokenizer.json: a token model needs one")
      kind, tok = "tokens", loaded.tokenizer
      model = hf.fit_vocab(loaded.model, tok)
  if _UNCACHED.value:
    if kind != "blt":
      raise app.UsageError("--uncached is the BLT reference decode; this is not a BLT")
    return generation.UncachedBLT(model, pcfg, em)
  return generation.generator_for(model, patching=pcfg, entropy_model=em, tokenizer=tok)


def prompts() -> list[bytes]:
  if _BATCH_FILE.value:
    with open(_BATCH_FILE.value, "rb") as f:
      return [line.rstrip(b"\r\n") for line in f if line.strip()]
  return [_PROMPT.value.encode()]


def run(gen, batch: list[bytes], sampling, stream) -> list[generation.Generation]:
  if isinstance(gen, generation.UncachedBLT):
    keys = row_keys(_SEED.value, len(batch))
    return [
      generation.generate_blt_uncached(gen, p, _N.value, sampling=sampling, key=k)
      for p, k in zip(batch, keys)
    ]
  return gen.generate(
    batch,
    _N.value,
    sampling=sampling,
    seed=_SEED.value,
    stop=_STOP.value,
    chunk=_CHUNK.value,
    on_bytes=stream,
  )


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  gen = load()
  sampling = generation.SamplingConfig(_TEMPERATURE.value, _TOP_P.value, _TOP_K.value)
  todo = prompts()
  out = sys.stdout
  shown = codecs.getincrementaldecoder("utf-8")(errors="replace")  # only the terminal's copy
  stream = None
  if len(todo) == 1:
    out.write(todo[0].decode("utf-8", errors="replace"))
    out.flush()

    def stream(row, data):
      out.write(shown.decode(data))
      out.flush()

  n_bytes = n_ids = 0
  t0 = time.perf_counter()
  for i in range(0, len(todo), _BATCH_SIZE.value):
    batch = todo[i : i + _BATCH_SIZE.value]
    results = run(gen, batch, sampling, stream)
    for j, (p, r) in enumerate(zip(batch, results)):
      n_bytes, n_ids = n_bytes + len(r.text), n_ids + len(r.ids)
      if stream is None:
        text = (p + r.text).decode("utf-8", errors="replace")
        out.write(f"=== [{i + j}] ({r.stop_reason})\n{text}\n")
      elif isinstance(gen, generation.UncachedBLT):
        out.write(r.text.decode("utf-8", errors="replace"))
  out.write(shown.decode(b"", final=True) + "\n")
  dt = time.perf_counter() - t0
  print(
    f"{len(todo)} prompt(s), {n_bytes} bytes / {n_ids} ids in {dt:.2f} s: "
    f"{n_bytes / dt:.1f} bytes/s, {n_ids / dt:.1f} ids/s (compilation included)",
    file=sys.stderr,
  )


if __name__ == "__main__":
  cli.run(main)
