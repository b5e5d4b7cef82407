"""Patch rules, layout and the incremental patcher against hand-worked examples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtok import patching
from jaxtok.data import codec
from jaxtok.patching import IncrementalPatcher, PatchingConfig, patch_starts

# Jitted once per shape: far fewer compilations than running op by op.
entropy_starts = jax.jit(
  patching.entropy_starts,
  static_argnames=("rule", "threshold", "threshold_add", "monotonic_start_at_2", "top_k"),
)
space_starts = jax.jit(patching.space_starts, static_argnums=3)
static_starts = jax.jit(patching.static_starts, static_argnums=2)
limit_patch_length = jax.jit(patching.limit_patch_length, static_argnums=2)
patch_lengths = jax.jit(patching.patch_lengths, static_argnums=2)
layout = jax.jit(patching.layout, static_argnums=2, static_argnames="lookahead")

T, F = True, False


def one_doc(n):
  return jnp.arange(n)[None], jnp.ones((1, n), jnp.int32)  # positions, segment ids


def starts_of(x):
  return np.asarray(x)[0].tolist()


def test_entropy_global_positions_0_and_1_always_start():
  h = jnp.asarray([[0.0, 0.2, 0.5, 2.0, 0.1, 1.4, 1.3, 3.0]])
  pos, seg = one_doc(8)
  got = entropy_starts(h, pos, seg, rule="global", threshold=1.335442066192627)
  # pos 1 starts although H_1 = 0.2 is low; 1.4 > θ > 1.3.
  assert starts_of(got) == [T, T, F, T, F, T, F, T]
  assert np.asarray(patch_lengths(got, seg, 6))[0].tolist() == [1, 2, 2, 2, 1, 0]


def test_entropy_monotonic_uses_the_increase_not_the_level():
  h = jnp.asarray([[9.0, 9.0, 1.0, 3.0, 2.9, 4.5, 4.6, 0.0]])
  pos, seg = one_doc(8)
  got = entropy_starts(h, pos, seg, rule="monotonic", threshold=1.0)
  # increases: 1-9, 3-1=2 (start), -0.1, 1.6 (start), 0.1, -4.6
  assert starts_of(got) == [T, T, F, T, F, T, F, F]
  level = entropy_starts(h, pos, seg, rule="global", threshold=1.0)
  assert starts_of(level) == [T, T, F, T, T, T, T, F]


def test_entropy_monotonic_reference_starts_byte_2_and_global_monotonic_needs_both():
  h = jnp.asarray([[9.0, 9.0, 1.0, 3.0, 2.9, 4.5, 4.6, 0.0]])
  pos, seg = one_doc(8)
  ref = entropy_starts(h, pos, seg, rule="monotonic", threshold=1.0, monotonic_start_at_2=True)
  assert starts_of(ref) == [T, T, T, T, F, T, F, F]  # byte 2 starts although H fell
  both = entropy_starts(h, pos, seg, rule="global_monotonic", threshold=2.95, threshold_add=1.0)
  # H > 2.95: 3.0, 4.5, 4.6; rise > 1: 2.0 (3.0), 1.6 (4.5); 4.6 rose by 0.1 only.
  assert starts_of(both) == [T, T, F, T, F, T, F, F]


def test_entropy_topk_takes_the_k_highest_of_the_row():
  h = jnp.asarray([[0.0, 9.0, 0.5, 2.0, 0.1, 1.4, 1.3, 3.0]])
  pos, seg = one_doc(8)
  got = entropy_starts(h, pos, seg, rule="topk", top_k=2)
  assert starts_of(got) == [T, T, F, T, F, F, F, T]  # 3.0 and 2.0; H_1 = 9 is not a candidate


def ids(data: bytes):
  return jnp.asarray(codec.encode(data, add_eos=False))[None]


def test_space_rule_of_the_reference_ends_patches_on_utf8_text():
  text = "a café 日本".encode()
  x = ids(text)
  n = x.shape[1]
  pos, seg = one_doc(n)
  got = starts_of(space_starts(x, pos, seg, "end"))
  # BOS a ' ' c a f C3 A9 ' ' E6 97 A5 E6 9C AC: a spacelike byte after a non-spacelike one
  # (the UTF-8 lead bytes C3 and the second E6 too) ends its patch.
  assert got == [T, T, F, T, F, F, F, T, F, T, F, F, F, T, F]
  bounds = [i for i, s in enumerate(got) if s] + [n]
  pieces = [codec.decode(np.asarray(x[0, a:b])) for a, b in zip(bounds, bounds[1:])]
  assert pieces == [b"", b"a ", b"caf\xc3", b"\xa9 ", "日".encode() + b"\xe6", b"\x9c\xac"]
  # Runs of spacelike bytes end one patch; the default rule is the reference's.
  y = ids(b"ab..cd  e")
  p2, s2 = one_doc(y.shape[1])
  assert starts_of(space_starts(y, p2, s2)) == [T, T, F, F, T, F, F, F, T, F]


def test_space_rule_end_decides_the_boundary_before_t_from_bytes_before_t():
  rng = np.random.default_rng(0)
  x = np.asarray(ids(rng.choice(list(b"ab .,\xc3\xa9"), 40).astype(np.uint8).tobytes()))
  pos, seg = one_doc(x.shape[1])
  base = starts_of(space_starts(jnp.asarray(x), pos, seg, "end"))
  for t in range(2, 41):
    y = x.copy()
    y[0, t] = codec.OFFSET + (ord(" ") if y[0, t] != codec.OFFSET + ord(" ") else ord("a"))
    got = starts_of(space_starts(jnp.asarray(y), pos, seg, "end"))
    assert got[: t + 1] == base[: t + 1]


def test_space_rule_start_on_utf8_multibyte_text():
  text = "a café 日本".encode()
  x = ids(text)
  n = x.shape[1]
  pos, seg = one_doc(n)
  got = starts_of(space_starts(x, pos, seg, "start"))
  # BOS a ' ' c a f C3 A9 ' ' E6 97 A5 E6 9C AC
  assert got == [T, T, T, F, F, F, T, F, T, F, F, F, T, F, F]
  # Patches: [BOS] [a] [ caf] [é] [ 日] [本]; continuation bytes never start one and
  # the lead byte E6 after a space does not either (run of spacelike bytes).
  bounds = [i for i, s in enumerate(got) if s] + [n]
  pieces = [codec.decode(np.asarray(x[0, a:b])) for a, b in zip(bounds, bounds[1:])]
  assert pieces == [b"", b"a", b" caf", "é".encode(), " 日".encode(), "本".encode()]


def test_space_rule_start_runs_of_punctuation_start_once():
  x = ids(b"ab..cd  e")
  pos, seg = one_doc(x.shape[1])
  # BOS a b . . c d ' ' ' ' e
  assert starts_of(space_starts(x, pos, seg, "start")) == [T, T, F, T, F, F, F, T, F, F]


def test_max_patch_length_splits_long_patches():
  x = ids(b"abcdefgh")  # one word: the space rule alone gives one long patch
  pos, seg = one_doc(9)
  base = space_starts(x, pos, seg)
  assert starts_of(base) == [T, T, F, F, F, F, F, F, F]
  got = limit_patch_length(base, seg, 3)
  assert starts_of(got) == [T, T, F, F, T, F, F, T, F]
  assert np.asarray(patch_lengths(got, seg, 5))[0].tolist() == [1, 3, 3, 2, 0]
  # Splitting restarts after every start of the rule itself.
  s = jnp.asarray([[T, T, F, F, F, F, T, F, F, F, F]])
  got = limit_patch_length(s, jnp.ones((1, 11), jnp.int32), 2)
  assert starts_of(got) == [T, T, F, T, F, T, T, F, T, F, T]


def test_static_patches_after_the_bos_patch():
  pos, seg = one_doc(10)
  assert np.asarray(patch_lengths(static_starts(pos, seg, 3), seg, 5))[0].tolist() == [
    1,
    3,
    3,
    3,
    0,
  ]


def test_rules_respect_pieces_and_padding():
  # Two document pieces then padding; positions restart at each piece.
  seg = jnp.asarray([[1, 1, 1, 1, 2, 2, 2, 0, 0]])
  pos = jnp.asarray([[0, 1, 2, 3, 0, 1, 2, 0, 0]])
  h = jnp.full((1, 9), 5.0)
  assert starts_of(entropy_starts(h, pos, seg, threshold=1.0)) == [T, T, T, T, T, T, T, F, F]
  assert starts_of(static_starts(pos, seg, 4)) == [T, T, F, F, T, T, F, F, F]
  lim = limit_patch_length(static_starts(pos, seg, 100), seg, 2)
  assert starts_of(lim) == [T, T, F, T, T, T, F, F, F]


def test_layout_by_hand():
  seg = jnp.asarray([[1, 1, 1, 1, 2, 2]])
  starts = jnp.asarray([[T, T, F, T, T, T, F]])  # last column: the byte after the row
  la = layout(starts, seg, 5, lookahead=True)
  assert np.asarray(la.patch_ids_BxT)[0].tolist() == [0, 1, 1, 2, 3, 4]
  assert np.asarray(la.enc_seg_BxT)[0].tolist() == [1, 2, 2, 3, 4, 5]
  # Byte t reads the patch before the one of byte t+1.
  assert np.asarray(la.dec_seg_BxT)[0].tolist() == [1, 1, 2, 3, 4, 4]
  assert np.asarray(la.lengths_BxP)[0].tolist() == [1, 2, 1, 1, 1]
  assert np.asarray(la.doc_BxP)[0].tolist() == [1, 1, 1, 2, 2]
  assert int(la.overflow_B[0]) == 0
  # Without lookahead: the patch before the byte's own, never one of another document.
  nl = layout(starts, seg, 5, lookahead=False)
  assert np.asarray(nl.dec_seg_BxT)[0].tolist() == [0, 1, 1, 2, 0, 4]
  # Room for 4 patches: the fifth patch's byte overflows into no slot.
  small = layout(starts, seg, 4, lookahead=True)
  assert np.asarray(small.enc_seg_BxT)[0].tolist() == [1, 2, 2, 3, 4, 0]
  assert np.asarray(small.patch_seg_BxP)[0].tolist() == [1, 2, 3, 4]
  assert int(small.overflow_B[0]) == 1
  assert np.asarray(small.dec_seg_BxT)[0].tolist() == [1, 1, 2, 3, 4, 4]
  # Padding bytes and empty slots are 0 everywhere.
  pad = layout(jnp.asarray([[T, T, F, F]]), jnp.asarray([[1, 1, 0]]), 4, lookahead=True)
  assert np.asarray(pad.enc_seg_BxT)[0].tolist() == [1, 2, 0]
  assert np.asarray(pad.dec_seg_BxT)[0].tolist() == [1, 1, 0]
  assert np.asarray(pad.patch_seg_BxP)[0].tolist() == [1, 2, 0, 0]


CONFIGS = [
  PatchingConfig(scheme="static", patch_size=3),
  PatchingConfig(scheme="static", patch_size=5, max_patch_length=2),
  PatchingConfig(scheme="space"),
  PatchingConfig(scheme="space", max_patch_length=4),
  PatchingConfig(scheme="space", space_rule="start"),
  PatchingConfig(scheme="space", space_rule="start", max_patch_length=4),
  PatchingConfig(scheme="entropy", entropy_model_workdir="x", threshold=1.5),
  PatchingConfig(scheme="entropy", entropy_model_workdir="x", threshold=1.5, max_patch_length=3),
  PatchingConfig(scheme="entropy", entropy_model_workdir="x", rule="monotonic", threshold=0.3),
  PatchingConfig(
    scheme="entropy",
    entropy_model_workdir="x",
    rule="monotonic",
    threshold=0.3,
    monotonic_start_at_2=True,
  ),
  PatchingConfig(
    scheme="entropy", entropy_model_workdir="x", rule="global_monotonic", threshold_add=0.2
  ),
]


@pytest.mark.parametrize(
  "cfg", CONFIGS, ids=lambda c: f"{c.scheme}-{c.rule}-{c.space_rule}-{c.max_patch_length}"
)
def test_incremental_patcher_equals_batch_patcher(cfg):
  rng = np.random.default_rng(0)
  n = 300
  # Random text with words, spaces, punctuation and multibyte characters.
  alphabet = list(b"abcdefghij  ..,\n") + list("é日".encode())
  text = rng.choice(alphabet, n - 1).astype(np.uint8).tobytes()
  x = ids(text)
  h = jnp.asarray(rng.gamma(2.0, 0.8, (1, n)), jnp.float32)
  pos, seg = one_doc(n)
  batch = np.asarray(jax.jit(patch_starts, static_argnums=0)(cfg, x, pos, seg, h))[0]
  patcher = IncrementalPatcher(cfg)
  # One byte per step, in a scan (one compilation instead of 300 dispatches); the step for
  # byte t is given byte t-1 unless the rule needs byte t itself.
  step = lambda state, xh: patcher.step(state, *xh)
  xs = x if patcher.needs_byte else jnp.pad(x[:, :-1], ((0, 0), (1, 0)))
  _, got = jax.jit(lambda xs, hs: jax.lax.scan(step, patcher.init(1), (xs, hs)))(xs.T, h.T)
  got = np.asarray(got)[:, 0].tolist()
  assert got == batch.tolist()
  assert 2 < sum(got) < n  # the rule did something


def test_topk_cannot_be_incremental_and_config_errors_name_the_field():
  with pytest.raises(ValueError, match="top-k"):
    IncrementalPatcher(
      PatchingConfig(scheme="entropy", rule="topk", top_k=3, entropy_model_workdir="x")
    )
  with pytest.raises(ValueError, match="config.patching.entropy_model_workdir"):
    PatchingConfig.from_dict({"scheme": "entropy"})
  with pytest.raises(ValueError, match="config.patching.scheme"):
    PatchingConfig.from_dict({"scheme": "bpe"})
  with pytest.raises(ValueError, match="unknown field"):
    PatchingConfig.from_dict({"scheme": "space", "treshold": 1.0})
