"""ZeTT at CI size: a tiny token LM on the embedded corpus as the base, a small hypernetwork.

  python -m experiments.zett_compare --config=configs/zett_tiny.py --workdir=workdirs/zett_tiny

trains the base LM (<workdir>/base) and the hypernetwork (<workdir>/hypernet) if they are
not there yet, then compares embedding inits under tokenizers the hypernetwork never saw.
`python -m experiments.train --config=configs/zett_tiny.py --workdir=DIR` trains only the
hypernetwork (and its base, in DIR/base, first).
"""

from ml_collections import config_dict

from configs import base, tiny
from jaxtok import configlib
from jaxtok.models.hypernet import HypernetConfig


def base_train():
  """The spine config of base model (a): a token LM with a byte-level BPE on stdlib."""
  c = tiny.get_config()
  # A BPE trained on a sample of the corpus: seconds instead of the full split.
  c.data.update(tokenizer="bpe:1024", tokenizer_docs=300, seq_len=128, batch_size=8, eval_batches=4)
  c.model.update(d_model=96, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=256)
  c.train.update(steps=300, lr=3e-3, warmup_steps=30, log_every=50, eval_every=0, ckpt_every=0)
  c.train.progress_bar = False
  return c


def get_config():
  c = base.get_config()
  c.model = configlib.defaults(HypernetConfig, name="hypernet", n_layers=3, n_heads=4, mlp_dim=256)
  c.base = config_dict.ConfigDict(
    dict(
      kind="jaxtok",  # "jaxtok": a jaxtok workdir (trained from base_train if empty); "gguf"
      workdir="",  # "" = <workdir>/base
      gguf="smollm2",  # kind="gguf": "smollm2" or a path
      bos="",  # special-token overrides (names or ids); "" = the tokenizer's own
      eos="",
      pad="",
    )
  )
  c.base_train = base_train()
  c.sampler = dict(
    min_vocab=768, max_vocab=2048, max_piece_bytes=16, noise_std=1.0, window=4, em_steps=1
  )
  c.data.update(batch_size=8, seq_len=384)  # rows of text (bytes) per step
  c.data.tokens_per_row = 160  # the row under the sampled tokenizer, cut to this many tokens
  c.data.vocab_per_step = 768  # batch tokens + random negatives: the step's softmax
  # Training text from several text specs (comma-separated, see jaxtok.tokenizers.targets),
  # e.g. for multilingual targets; "" = data.name alone.
  c.data.update(mix="", mix_docs=2000, mix_doc_bytes=4096)
  c.train.update(steps=150, lr=1e-3, warmup_steps=10, weight_decay=0.01, log_every=10, eval_every=0)
  c.train.update(ckpt_every=50, keep=2)
  # The identity phase (MIMICK-style, before the transfer phase, its own optimizer): base
  # tokens predicted from their parts. Off here: on this preset it made the hypernetwork worse
  # than FVT at first and no better at the end (README, ZeTT).
  c.train.identity_steps = 0
  c.train.identity_batch = 256  # base tokens per identity step
  c.train.aux_weight = 0.5  # L2 to the base embeddings of shared tokens (relative to their var)
  c.train.base_dtype = "float32"  # the frozen base LM's dtype
  # Evaluation tokenizers ("spec" or "spec@text": trained on and scored on held-out `text`),
  # every train.eval_every steps and at the end: `python -m experiments.zett_curve`.
  c.eval = dict(tokenizers="unigram:1024", docs=16, doc_bytes=2048, seq_len=128, batch_size=8)
  c.compare = dict(
    hypernet_workdir="",  # "" = <workdir>/hypernet
    eval_docs=24,
    doc_bytes=2048,
    seq_len=128,
    batch_size=8,
    target_docs=200,  # documents that target tokenizers are trained on
    focus_docs=200,  # target-domain documents for FOCUS's auxiliary vectors
    fetch=False,  # download llama.cpp vocabularies / Debian packages when absent
    dynamic_merges="16,64,256",  # dynamic tokenization: merges per batch ("" = skip)
  )
  c.compare.targets = config_dict.ConfigDict(
    dict(
      bpe_2048=dict(tokenizer="bpe:2048", train_text="", eval_text=""),
      unigram_1024=dict(tokenizer="unigram:1024", train_text="", eval_text=""),
      wordpiece_1024=dict(tokenizer="wordpiece:1024", train_text="", eval_text=""),
      gpt2=dict(tokenizer="gguf:gpt-2", train_text="", eval_text=""),
    )
  )
  return c
