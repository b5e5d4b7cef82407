"""Token models count exactly the bytes of the documents, whatever the bytes: random bytes
(mostly invalid UTF-8) through the token LM's training task, the tokenizer BPB evaluation and
ZeTT's token rows."""

import numpy as np
import pytest

from configs import tiny
from jaxtok.data.packing import PackedBatches
from jaxtok.eval import tokenizer_bpb
from jaxtok.tokenizers import bpe
from jaxtok.tokenizers.load import load_tokenizer
from jaxtok.train import zett
from jaxtok.train.tasks import get_task

TRAIN = ["def area(r):\n    return 3.14159 * r * r\n", "Die Katze saß auf der Matte. 日本語"] * 20


def random_docs(seed: int, n: int = 12) -> list[bytes]:
  rng = np.random.default_rng(seed)
  docs = [rng.integers(0, 256, k).astype(np.uint8).tobytes() for k in rng.integers(1, 60, n)]
  return [b"abc\xff\xfe def", *docs, b"na\xc3\xafve \xe6\x97"]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok") / "tokenizer.json")
  bpe.train_bpe(TRAIN, 300).save(path)
  return path


def predicted_bytes(tok, batches) -> tuple[bytes, int]:
  """(the bytes of every target token in stream order, the sum of target_bytes)."""
  text = b"".join(tok.vocab[t] for b in batches for t in b["targets"].ravel() if t >= 0)
  return text, sum(int(b["target_bytes"].sum()) for b in batches)


def test_training_task_counts_the_documents_bytes(tokenizer_file):
  tok = load_tokenizer(tokenizer_file)
  c = tiny.get_config()
  c.data.update(tokenizer="bpe:300", tokenizer_file=tokenizer_file, bytes_per_token=1.0)
  c.model.vocab_size = tok.vocab_size
  task = get_task(c)
  docs = random_docs(0)
  packed = PackedBatches(
    docs, batch_size=2, seq_len=16, seed=0, shuffle=False, repeat=False, encode_fn=task.encode_fn
  )
  batches = [task.host_transform(b) for b in packed]  # documents split across rows
  text, counted = predicted_bytes(tok, batches)
  assert text == b"".join(docs)
  assert counted == sum(len(d) for d in docs)


def test_tokenizer_bpb_batches_count_the_documents_bytes(tokenizer_file):
  tok = load_tokenizer(tokenizer_file)
  docs = random_docs(1)
  batches = tokenizer_bpb.eval_batches(tok, docs, seq_len=8, batch_size=3)
  text, counted = predicted_bytes(tok, batches)
  assert text == b"".join(docs) and counted == sum(len(d) for d in docs)


def test_zett_token_rows_count_the_pieces_bytes(tokenizer_file):
  tok = load_tokenizer(tokenizer_file)
  docs = random_docs(2, n=6)
  pieces = [[(d, True, True) for d in docs[:4]], [(d, True, True) for d in docs[4:]]]
  batch = zett.tokenize_rows(pieces, tok, 256)  # every piece fits its row
  text, counted = predicted_bytes(tok, [batch])
  assert text == b"".join(docs) and counted == sum(len(d) for d in docs)
