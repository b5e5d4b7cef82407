"""Data: the BLT byte codec, corpora (tfds array_record, no TensorFlow), packing."""

from jaxtok.data.codec import (
  BOE_ID,
  BOS_ID,
  BPE_DELIM_ID,
  EOS_ID,
  OFFSET,
  PAD_ID,
  VOCAB_SIZE,
  decode,
  decode_text,
  encode,
)
from jaxtok.data.corpora import Corpus, CorpusError, default_data_dir, load_corpus
from jaxtok.data.packing import PackedBatches, Prefetcher, unigram_bits_per_byte

__all__ = [
  "BOE_ID",
  "BOS_ID",
  "BPE_DELIM_ID",
  "EOS_ID",
  "OFFSET",
  "PAD_ID",
  "VOCAB_SIZE",
  "Corpus",
  "CorpusError",
  "PackedBatches",
  "Prefetcher",
  "decode",
  "decode_text",
  "default_data_dir",
  "encode",
  "load_corpus",
  "unigram_bits_per_byte",
]
