"""Which task a config trains (`config.model.name`), and the phases it trains in."""

from __future__ import annotations

import functools

from jaxtok.data import packing
from jaxtok.models import workdir as workdir_lib
from jaxtok.models.flops import transformer_config_flops
from jaxtok.models.losses import lm_loss
from jaxtok.models.transformer import Transformer
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.train import patch_level, zett
from jaxtok.train.blt_task import blt_task
from jaxtok.train.phases import Phase
from jaxtok.train.task import Task


def transformer_task(config, **placement) -> Task:
  """A byte LM, or a token LM when config.data.tokenizer names a tokenizer (`placement`:
  unused, nothing is loaded from files)."""
  cfg = workdir_lib.model_config(config)
  flops = transformer_config_flops(cfg, config.data.seq_len)
  build = lambda rngs: Transformer(cfg, rngs=rngs)
  spec = config.data.get("tokenizer", "")
  if not spec:
    return Task(name="transformer", build_model=build, loss_fn=lm_loss, flops=flops)
  path = config.data.get("tokenizer_file", "")
  if not path:
    raise ValueError(
      f"config.data.tokenizer={spec!r} is not prepared yet (jaxtok.train.prepare copies it into "
      "the workdir and sets config.data.tokenizer_file)"
    )
  tok = load_tokenizer(path)
  if tok.vocab_size != cfg.vocab_size:
    raise ValueError(
      f"config.model.vocab_size={cfg.vocab_size}, but the tokenizer {path} has "
      f"{tok.vocab_size} tokens"
    )
  bpt = float(config.data.bytes_per_token)
  return Task(
    name="transformer",
    build_model=build,
    loss_fn=lm_loss,
    flops=flops.scaled(1.0 / bpt),
    encode_fn=tok.make_encoder(),
    host_transform=functools.partial(packing.with_target_bytes, lengths=tok.lengths),
    extra={"tokenizer": spec, "bytes_per_token": bpt},
  )


TASKS = {"transformer": transformer_task, "blt": blt_task, "hypernet": zett.hypernet_task}


def get_task(config, *, mesh=None, rules=None) -> Task:
  """The task `config.model.name` names; weights it loads from files (a ZeTT base LM) are
  placed on `mesh` with `rules` (jaxtok.sharding) as they load, else on the default device."""
  name = config.model.get("name", "transformer")
  if name not in TASKS:
    raise ValueError(f"config.model.name={name!r}: unknown; known: {sorted(TASKS)}")
  return TASKS[name](config, mesh=mesh, rules=rules)


def make_phases(task: Task, config) -> list[Phase]:
  """The phases `config` asks for; phases with no steps are left out."""
  if task.phases is not None:
    phases = task.phases
  elif patch_level.enabled(config):
    phases = patch_level.make_phases(task, config)
  else:
    phases = [Phase("train", config.train.steps, task.loss_fn, task.flops)]
  return [p for p in phases if p.steps > 0]
