"""Defaults shared by every training config; a config file starts from these."""

from ml_collections import config_dict

from jaxtok import configlib
from jaxtok.models.transformer import TransformerConfig


def model_defaults() -> config_dict.ConfigDict:
  """Every field of jaxtok.models.transformer.TransformerConfig, at its default."""
  return configlib.defaults(TransformerConfig, name="transformer")


def get_config() -> config_dict.ConfigDict:
  c = config_dict.ConfigDict()
  c.model = model_defaults()
  c.data = config_dict.ConfigDict(
    dict(
      name="stdlib",  # "stdlib", "files:<path|glob>[,...]", or a prepared tfds name
      data_dir="",  # tfds data dir; "" = $JAXTOK_DATA_DIR or ~/.cache/jaxtok/tfds
      text_key="text",  # text feature of a tfds dataset / field of JSON lines
      tokenizer="",  # "" = bytes; "bpe:<vocab>" = byte-level BPE trained on train; or a path
      tokenizer_docs=2000,  # bpe:<vocab> trains on this many training documents
      tokenizer_file="",  # set by jaxtok.train.prepare: the workdir's copy of the tokenizer
      bytes_per_token=0.0,  # set by jaxtok.train.prepare: measured on training documents
      val_fraction=0.02,  # share of stdlib/local documents held out for validation
      seq_len=512,  # tokens (bytes for byte models) per row
      batch_size=8,  # global batch, rows
      eval_batches=16,  # 0 = the whole validation split
      prefetch=2,  # batches packed ahead by a background thread
      unigram_baseline=True,  # also report the validation BPB of a unigram byte model
    )
  )
  c.train = config_dict.ConfigDict(
    dict(
      steps=1000,  # optimizer steps in all (all phases)
      lr=3e-3,  # peak learning rate (AdamW)
      warmup_steps=100,  # linear warm-up, then cosine decay
      final_lr_fraction=0.1,  # the cosine ends at lr x this
      weight_decay=0.1,  # decoupled (AdamW), on matrices only
      b1=0.9,  # Adam's first-moment decay
      b2=0.95,  # Adam's second-moment decay
      clip_norm=1.0,  # global gradient-norm clipping; 0 = off
      grad_accum=1,  # micro-batches per step (data.batch_size must divide)
      seed=0,  # parameter initialisation and data order
      log_every=25,  # steps between metric rows (metrics.jsonl, TensorBoard)
      eval_every=250,  # steps between validation evaluations; 0 = at the end only
      ckpt_every=250,  # steps between checkpoints; 0 = when the run stops or ends
      keep=3,  # checkpoints kept (older ones deleted once a newer one commits)
      async_ckpt=True,  # write checkpoints in the background
      progress_bar=True,  # a tqdm bar on process 0
      # Patch-level training (jaxtok/train/patch_level.py): the first `fraction` of the steps
      # on patches of K tokens, then tokens. K=0 or fraction=0: off. blt_latent: for a BLT,
      # the latent transformer reads groups of K patches instead (experimental).
      patch_level=config_dict.ConfigDict(dict(K=0, fraction=0.0, blt_latent=False)),
    )
  )
  c.mesh = config_dict.ConfigDict(
    dict(
      data=-1,  # data-parallel devices; -1 = all the devices fsdp x tensor leave
      fsdp=1,  # devices the parameters (embed axis) and the batch are sharded over
      tensor=1,  # devices the heads, MLP and vocabulary axes are split over
      dcn_data=1,  # slices (TPU) / process groups the data axis spans over DCN; must divide data
      # Logical axis -> mesh axes, for parameters and activations (jaxtok/sharding.py).
      rules="default",  # preset default|fsdp|tensor_parallel|data_parallel [,name=axis+axis]
    )
  )
  return c
