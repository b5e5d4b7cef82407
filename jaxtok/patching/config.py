"""Which patching rule a BLT uses, with validation that names the bad field."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxtok.configlib import Section

SCHEMES = ("static", "space", "entropy")
ENTROPY_RULES = ("global", "monotonic", "global_monotonic", "topk")
SPACE_RULES = ("end", "start")
ENTROPY_SOURCES = ("on_the_fly", "precomputed")
# BLT's default global entropy threshold (nats).
BLT_THRESHOLD = 1.335442066192627


@dataclasses.dataclass(frozen=True)
class PatchingConfig(Section):
  scheme: str = "entropy"  # "static" (MEGABYTE-like), "space" (SpaceByte-like) or "entropy"
  # entropy rule: "global" H_t > θ, "monotonic" H_t - H_{t-1} > θ, "global_monotonic"
  # H_t > θ and H_t - H_{t-1} > threshold_add, "topk"
  rule: str = "global"
  threshold: float = BLT_THRESHOLD  # θ in nats, for the global and monotonic rules
  threshold_add: float = 0.0  # global_monotonic: the bound on H_t - H_{t-1}
  monotonic_start_at_2: bool = False  # monotonic rule: byte 2 always starts a patch (reference)
  space_rule: str = (
    "end"  # space scheme: a space-like byte "end"s its patch (reference) or "start"s one
  )
  top_k: int = 0  # topk rule: this many highest-entropy bytes per row start patches
  patch_size: int = 4  # static rule: bytes per patch
  max_patch_length: int = 0  # 0 = unbounded; else longer patches are split every this many bytes
  max_patches: int = 0  # patches per row the model has room for; 0 = seq_len (never overflows)
  # Training batches use the slots they need: their most patches in a row rounded up to a
  # multiple of this (at most max_patches; one compiled step per size). 0 = max_patches, as
  # in multi-process runs (every process must run the same program).
  slot_bucket: int = 16
  entropy_model_workdir: str = ""  # training workdir of the entropy model (entropy scheme)
  entropies: str = "on_the_fly"  # "on_the_fly" (run the entropy model) or "precomputed"
  entropy_batch_size: int = 16  # rows per entropy-model call in the precompute pass
  entropy_store: str = ""  # precomputed: where they are (set by jaxtok.train.prepare)
  bytes_per_patch: float = 0.0  # for FLOP accounting; 0 = measured on training batches at start

  section: ClassVar[str] = "patching"

  def validate(self) -> None:
    need = self.need

    need(self.scheme in SCHEMES, "scheme", f"one of {SCHEMES}")
    need(self.rule in ENTROPY_RULES, "rule", f"one of {ENTROPY_RULES}")
    need(self.space_rule in SPACE_RULES, "space_rule", f"one of {SPACE_RULES}")
    need(self.patch_size >= 1, "patch_size", "must be >= 1")
    need(self.max_patch_length >= 0, "max_patch_length", "must be >= 0 (0 = unbounded)")
    need(self.max_patches >= 0, "max_patches", "must be >= 0 (0 = one per byte)")
    need(self.slot_bucket >= 0, "slot_bucket", "must be >= 0 (0 = always max_patches)")
    need(self.entropies in ENTROPY_SOURCES, "entropies", f"one of {ENTROPY_SOURCES}")
    need(self.entropy_batch_size >= 1, "entropy_batch_size", "must be >= 1")
    need(self.bytes_per_patch >= 0, "bytes_per_patch", "must be >= 0 (0 = measure)")
    if self.scheme == "entropy":
      need(
        bool(self.entropy_model_workdir),
        "entropy_model_workdir",
        "the entropy scheme needs the workdir of a trained entropy model "
        "(python -m experiments.train --config=configs/entropy_model.py --workdir=...)",
      )
      need(self.rule != "topk" or self.top_k >= 1, "top_k", "the topk rule needs top_k >= 1")

  @property
  def lookahead(self) -> bool:
    """Whether the boundary before byte t+1 is known from bytes <= t.

    True for static and entropy patches (H(x_{t+1} | x_<=t) is computed before
    x_{t+1} exists) and for the reference space rule (byte t+1 starts a patch when
    byte t ends one), so byte t may read the latent of its own, finished patch;
    False for the "start" space rule, whose boundary depends on byte t+1 itself.
    """
    if self.scheme == "space":
      return self.space_rule == "end"
    return self.scheme == "static" or (self.scheme == "entropy" and self.rule != "topk")

  @property
  def causal(self) -> bool:
    """Whether a patch boundary depends only on the bytes before it (top-k does not)."""
    return not (self.scheme == "entropy" and self.rule == "topk")
