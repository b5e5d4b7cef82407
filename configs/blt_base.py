"""Shared defaults of the BLT configs (blt_entropy / blt_space / blt_static).

Not a runnable config: the variants set `patching.scheme`. Sizes are for a CPU:
a ~1.4M-parameter latent transformer over patches with light local models.
"""

from ml_collections import config_dict

from configs import base


def model_defaults() -> config_dict.ConfigDict:
  return config_dict.ConfigDict(
    dict(
      name="blt",
      d_local=128,
      d_global=256,
      n_layers_encoder=1,
      n_layers_global=4,
      n_layers_decoder=2,
      n_heads_local=4,
      n_heads_global=4,
      n_kv_heads_global=config_dict.placeholder(int),
      mlp_dim_local=config_dict.placeholder(int),
      mlp_dim_global=config_dict.placeholder(int),
      local_window=512,
      cross_attn_k=2,
      cross_attn_heads=4,
      cross_attn_all_layers_encoder=False,
      cross_attn_all_layers_decoder=False,
      hash_vocab=4096,
      hash_ngram_sizes=(3, 4, 5, 6, 7, 8),
      hash_functions=1,
      rope_theta=10000.0,
      norm_eps=1e-5,
      dtype="float32",
      param_dtype="float32",
      attention_impl="xla",
      pool_impl="xla",
      scan_layers=True,  # False: Python loops over the same stacked layers (slow compiles)
      remat="none",  # layer rematerialisation: "none" | "full" | "dots" | "dots_no_batch"
    )
  )


def patching_defaults() -> config_dict.ConfigDict:
  return config_dict.ConfigDict(
    dict(
      scheme="entropy",
      rule="global",
      threshold=1.335442066192627,  # BLT's global threshold (nats)
      top_k=0,
      patch_size=4,
      max_patch_length=16,
      max_patches=192,  # patch slots per 512-byte row (0 = one per byte, never overflows)
      entropy_model_workdir="workdirs/entropy_model",
      entropies="on_the_fly",
      entropy_batch_size=16,
      bytes_per_patch=0.0,  # 0 = measured at start-up (for FLOP accounting)
    )
  )


def get_config(scheme: str = "entropy"):
  c = base.get_config()
  c.model = model_defaults()
  c.patching = patching_defaults()
  c.patching.scheme = scheme
  c.data.update(seq_len=512, batch_size=8)
  c.train.update(steps=600, lr=3e-3, warmup_steps=60, log_every=25, eval_every=200, ckpt_every=200)
  return c
