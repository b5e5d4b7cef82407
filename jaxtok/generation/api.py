"""The Python API: `jaxtok.generate(model, prompt, ...)` -> text and per-byte log-probs."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from jaxtok import patching as patching_lib
from jaxtok.generation.blt import BLTGenerator
from jaxtok.generation.lm import LMGenerator
from jaxtok.generation.loop import DEFAULT_CHUNK, Generation, Generator
from jaxtok.generation.sampling import SamplingConfig
from jaxtok.models import entropy_model as entropy_model_lib
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.blt import BLT
from jaxtok.models.entropy_model import EntropyModel
from jaxtok.models.transformer import Transformer

if TYPE_CHECKING:  # only a type: generation never loads HF tokenizers itself
  from jaxtok.tokenizers.byte_view import ByteTokenizer

DEFAULT_NEW = 128


def load_for_generation(workdir: str):
  """(kind, model, patching config, entropy model) of a workdir: kind "blt", "transformer"
  (bytes) or "tokens" (a token LM, e.g. ZeTT-transferred: its tokenizer is the workdir's
  `tokenizer.json`, which the caller loads)."""
  model, config = workdir_lib.restore(workdir)
  if isinstance(model, BLT):
    pcfg, em = entropy_model_lib.patching_from_workdir(workdir)
    return "blt", model, pcfg, em
  if isinstance(model, Transformer):
    return ("tokens" if config.data.get("tokenizer") else "transformer"), model, None, None
  raise ValueError(f"{workdir}: generation supports BLTs and transformer LMs")


def generator_for(
  model,
  *,
  patching: patching_lib.PatchingConfig | None = None,
  entropy_model: EntropyModel | None = None,
  tokenizer: ByteTokenizer | None = None,
  max_len: int | None = None,
) -> Generator:
  """A generator for a workdir path, a BLT (+ patching, entropy model), a Transformer (+ its
  tokenizer for token vocabs), or a generator (returned as is)."""
  if isinstance(model, Generator):
    return model
  if isinstance(model, str | os.PathLike):
    path = os.fspath(model)
    kind, model, pcfg, em = load_for_generation(path)
    if kind == "tokens" and tokenizer is None:
      raise ValueError(
        f"{path} is a token LM: pass its tokenizer (tokenizer=load_tokenizer("
        f"'{workdir_lib.tokenizer_path(path)}'))"
      )
    patching, entropy_model = patching or pcfg, entropy_model or em
  if isinstance(model, BLT):
    if patching is None:
      raise ValueError("patching: a BLT generates with its PatchingConfig (patching=...)")
    return BLTGenerator(model, patching, entropy_model, max_len=max_len)
  if isinstance(model, Transformer):
    return LMGenerator(model, tokenizer, max_len=max_len)
  raise TypeError(f"model: cannot generate from a {type(model).__name__}")


def generate(
  model,
  prompt: bytes | str | Sequence[bytes | str],
  max_new_bytes: int | None = None,
  *,
  max_new_tokens: int | None = None,
  patching: patching_lib.PatchingConfig | None = None,
  entropy_model: EntropyModel | None = None,
  tokenizer: ByteTokenizer | None = None,
  temperature: float = 0.0,
  top_p: float = 1.0,
  top_k: int = 0,
  seed: int | Sequence[int] = 0,
  stop: Sequence[bytes | str] = (),
  chunk: int = DEFAULT_CHUNK,
  on_bytes: Callable[[int, bytes], None] | None = None,
) -> Generation | list[Generation]:
  """Continues `prompt` (or each prompt of a list, batched) with `model`.

  `model`: a training workdir, a BLT (with `patching` and, for entropy
  patching, `entropy_model`), a Transformer (byte vocab, or with its
  `tokenizer`), or a generator of `jaxtok.generation`, whose compiled steps
  are reused. Byte models take `max_new_bytes`, token models `max_new_tokens`
  (default 128). Returns a `Generation` (a list for a list of prompts): the
  exact bytes, the natural log-prob of each byte under the model (before
  temperature and top-k/top-p; a token's on its last byte), the ids and why
  the row stopped (EOS, a `stop` string, which is kept, or the length).
  `on_bytes(row, data)` streams each row's bytes as they are produced.
  """
  gen = generator_for(model, patching=patching, entropy_model=entropy_model, tokenizer=tokenizer)
  tokens = isinstance(gen, LMGenerator) and gen.tokenizer is not None
  given, other = (max_new_tokens, max_new_bytes) if tokens else (max_new_bytes, max_new_tokens)
  if other is not None:
    want, got = (
      ("max_new_tokens", "max_new_bytes") if tokens else ("max_new_bytes", "max_new_tokens")
    )
    raise ValueError(f"{got}: this model generates {want.split('_')[-1]}; pass {want}")
  single = isinstance(prompt, bytes | bytearray | str)
  prompts = [prompt] if single else list(prompt)
  out = gen.generate(
    prompts,
    DEFAULT_NEW if given is None else given,
    sampling=SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k),
    seed=seed,
    stop=stop,
    chunk=chunk,
    on_bytes=on_bytes,
  )
  return out[0] if single else out


def generate_text(
  model: Transformer,
  tok: ByteTokenizer,
  prompt: bytes | str,
  *,
  max_new_tokens: int = 32,
  temperature: float = 0.0,
  seed: int = 0,
) -> bytes:
  """Continues `prompt` with a token model: the bytes (compiled steps are kept across calls)."""
  gen = LMGenerator(model, tok)
  sampling = SamplingConfig(temperature=temperature)
  return gen.generate([prompt], max_new_tokens, sampling=sampling, seed=seed)[0].text
