"""Tests for the BLT byte codec."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxtok.data import codec


def test_constants_match_blt():
  assert (codec.BOE_ID, codec.BOS_ID, codec.EOS_ID, codec.BPE_DELIM_ID) == (0, 1, 2, 3)
  assert (codec.PAD_ID, codec.OFFSET, codec.VOCAB_SIZE) == (-1, 4, 260)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_round_trip_any_bytes(data):
  ids = codec.encode(data)
  assert ids.dtype == np.int32
  assert ids[0] == codec.BOS_ID and ids[-1] == codec.EOS_ID
  assert ids.size == len(data) + 2
  assert np.all((ids[1:-1] >= codec.OFFSET) & (ids[1:-1] < codec.VOCAB_SIZE))
  assert codec.decode(ids) == data


@pytest.mark.parametrize(
  "data",
  [
    b"",
    b"\x00",
    b"\x00\x01\x02\x03\xff",
    b"\xff\xfe\xc3\x28",  # invalid UTF-8
    bytes(range(256)),
    "héllo wörld ✓ 字".encode(),
  ],
)
def test_round_trip_edge_cases(data):
  for bos in (False, True):
    for eos in (False, True):
      ids = codec.encode(data, add_bos=bos, add_eos=eos)
      assert ids.size == len(data) + bos + eos
      assert codec.decode(ids) == data


def test_ids_are_byte_plus_offset():
  np.testing.assert_array_equal(
    codec.encode(bytes([0, 1, 255]), add_bos=False, add_eos=False), [4, 5, 259]
  )


def test_random_bytes_seeded():
  data = np.random.default_rng(0).integers(0, 256, size=100_000, dtype=np.uint8).tobytes()
  assert codec.decode(codec.encode(data)) == data


def test_str_is_utf8():
  np.testing.assert_array_equal(codec.encode("é"), codec.encode("é".encode("utf-8")))
  assert codec.decode_text(codec.encode("é✓")) == "é✓"


def test_decode_drops_specials_and_padding():
  ids = np.array(
    [
      [codec.BOS_ID, 4 + ord("a"), codec.BOE_ID, codec.BPE_DELIM_ID],
      [4 + ord("b"), codec.EOS_ID, codec.PAD_ID, codec.PAD_ID],
    ]
  )
  assert codec.decode(ids) == b"ab"
  assert codec.decode([]) == b""


def test_decode_text_replaces_invalid_utf8():
  assert codec.decode_text(codec.encode(b"a\xffb")) == "a\ufffdb"


def test_decode_rejects_out_of_vocab():
  with pytest.raises(ValueError, match="outside"):
    codec.decode([260])
