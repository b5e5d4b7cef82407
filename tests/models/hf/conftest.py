"""Tiny random models saved by transformers' `save_pretrained` (the exact hub layout)."""

import numpy as np
import torch
import transformers

from jaxtok.data import codec

TEXT = b"The quick brown fox, 'jumps' over the lazy dog. Numbers: 12345; caf\xc3\xa9!\n"


def blt_config(**over):
  """A tiny transformers BltConfig; `over` replaces top-level fields."""
  kw = dict(
    vocab_size=260,
    max_position_embeddings=256,
    patch_in_forward=True,
    patching_mode="entropy",
    cross_attn_k=2,
    encoder_hash_byte_group_size=[3, 4, 5],
    encoder_hash_byte_group_vocab=97,
    encoder_hash_byte_group_nb_functions=1,
    local_attention_window_len=16,
    encoder_config=dict(
      hidden_size=32,
      num_attention_heads=4,
      num_hidden_layers=1,
      intermediate_size=96,
      hidden_size_global=64,
    ),
    decoder_config=dict(
      hidden_size=32,
      num_attention_heads=4,
      num_hidden_layers=2,
      intermediate_size=96,
      hidden_size_global=64,
      cross_attn_all_layers=True,
    ),
    global_config=dict(
      hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=160
    ),
    patcher_config=dict(
      hidden_size=32,
      num_attention_heads=4,
      num_hidden_layers=2,
      intermediate_size=96,
      sliding_window=16,
    ),
    eos_token_id=2,
    bos_token_id=1,
  )
  kw.update(over)
  return transformers.BltConfig(**kw)


def save_blt(path, cfg, seed=0):
  """A random BLT whose patcher has spread-out entropies, its threshold at their median on
  TEXT (so patches have several lengths), saved with save_pretrained."""
  torch.manual_seed(seed)
  model = transformers.BltForCausalLM(cfg).eval()
  with torch.no_grad():
    model.model.patcher.lm_head.weight.mul_(30.0)  # peaked predictions: entropies vary
    ids = torch.tensor(codec.encode(TEXT, add_eos=False)[None], dtype=torch.long)
    ent = model.model.patcher(ids)[0][0, 1:].numpy()
  # Midway across the widest gap between the middle entropies: no entropy sits near it, so
  # float rounding cannot flip a boundary.
  e = np.sort(ent)
  k = len(e) // 3 + int(np.argmax(np.diff(e[len(e) // 3 : 2 * len(e) // 3])))
  model.config.patching_threshold = float((e[k] + e[k + 1]) / 2)
  model.save_pretrained(path)
  return transformers.BltForCausalLM.from_pretrained(path).eval()
