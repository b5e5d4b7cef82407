"""Defaults shared by every training config; a config file starts from these."""

from ml_collections import config_dict


def model_defaults() -> config_dict.ConfigDict:
  return config_dict.ConfigDict(
    dict(
      name="transformer",
      vocab_size=260,
      d_model=256,
      n_layers=4,
      n_heads=4,
      n_kv_heads=config_dict.placeholder(int),  # None: n_heads
      head_dim=config_dict.placeholder(int),  # None: d_model // n_heads
      mlp_dim=config_dict.placeholder(int),  # None: Llama sizing
      rope_theta=10000.0,
      rope_layout="interleaved",
      sliding_window=config_dict.placeholder(int),
      norm_eps=1e-5,
      tie_embeddings=False,
      dtype="float32",
      param_dtype="float32",
      attention_impl="xla",
      scan_layers=True,  # False: a Python loop over the same stacked layers (slow compiles)
      remat="none",  # layer rematerialisation: "none" | "full" | "dots" | "dots_no_batch"
    )
  )


def get_config() -> config_dict.ConfigDict:
  c = config_dict.ConfigDict()
  c.model = model_defaults()
  c.data = config_dict.ConfigDict(
    dict(
      name="stdlib",  # "stdlib", "files:<path|glob>[,...]", or a prepared tfds name
      data_dir="",  # tfds data dir; "" = $JAXTOK_DATA_DIR or ~/.cache/jaxtok/tfds
      text_key="text",
      tokenizer="",  # "" = bytes; "bpe:<vocab>" = byte-level BPE trained on train; or a path
      val_fraction=0.02,
      seq_len=512,
      batch_size=8,  # global batch, rows
      eval_batches=16,  # 0 = the whole validation split
      prefetch=2,
      unigram_baseline=True,
    )
  )
  c.train = config_dict.ConfigDict(
    dict(
      steps=1000,
      lr=3e-3,
      warmup_steps=100,
      final_lr_fraction=0.1,
      weight_decay=0.1,
      b1=0.9,
      b2=0.95,
      clip_norm=1.0,
      grad_accum=1,
      seed=0,
      log_every=25,
      eval_every=250,
      ckpt_every=250,
      keep=3,
      async_ckpt=True,
      progress_bar=True,
      # Patch-level training (jaxtok/train/patch_level.py): the first `fraction` of the steps
      # on patches of K tokens, then tokens. K=0 or fraction=0: off. blt_latent: for a BLT,
      # the latent transformer reads groups of K patches instead (experimental).
      patch_level=config_dict.ConfigDict(dict(K=0, fraction=0.0, blt_latent=False)),
    )
  )
  c.mesh = config_dict.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  return c
