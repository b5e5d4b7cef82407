"""PyTorch baselines of the training benchmarks (bench-time only: jaxtok never imports torch).

* `ByteLM`: the byte LM of `jaxtok.models.transformer` at equal shapes, in plain PyTorch
  eager (pre-norm RMSNorm, interleaved RoPE, SwiGLU, causal `scaled_dot_product_attention`,
  untied head); document masks are left out (a dense mask would slow sdpa down).
* `blt_reference`: `transformers`' `BltForCausalLM` built from a jaxtok `BLTConfig`
  (`jaxtok.models.hf.blt.config_to_hf`), fed the jaxtok batch's own patch lengths.
Both train with AdamW (fused where this torch build has it) and cross-entropy.
`available()` is None when torch (and transformers, for the BLT) import, else the reason.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from jaxtok.models.hf.blt import config_to_hf


def available(need_transformers: bool = False) -> str | None:
  for mod in ("torch", "transformers") if need_transformers else ("torch",):
    if importlib.util.find_spec(mod) is None:
      return f"{mod} is not installed (pip install -e '.[test]'): no PyTorch baseline"
  return None


def _torch():
  import torch

  return torch


def byte_lm(vocab, d, n_layers, n_heads, n_kv_heads, hidden, theta):
  """jaxtok's Transformer at these sizes (head_dim d / n_heads, grouped kv heads)."""
  torch = _torch()
  hd = d // n_heads
  nn, F = torch.nn, torch.nn.functional

  class RMSNorm(nn.Module):
    def __init__(self, dim):
      super().__init__()
      self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
      return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight

  def rope(x, cos, sin):  # adjacent pairs (x[2i], x[2i+1]), as jaxtok's "interleaved"
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
      self.qkv = nn.Linear(d, (n_heads + 2 * n_kv_heads) * hd, bias=False)
      self.o = nn.Linear(d, d, bias=False)
      self.gate_up = nn.Linear(d, 2 * hidden, bias=False)
      self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x, cos, sin):
      b, t, _ = x.shape
      q, k, v = (
        self.qkv(self.n1(x)).view(b, t, -1, hd).split([n_heads, n_kv_heads, n_kv_heads], dim=2)
      )
      q, k = rope(q, cos, sin), rope(k, cos, sin)
      a = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        is_causal=True,
        enable_gqa=n_kv_heads != n_heads,
      )
      x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
      g, u = self.gate_up(self.n2(x)).chunk(2, -1)
      return x + self.down(F.silu(g) * u)

  class ByteLM(nn.Module):
    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(vocab, d)
      self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
      self.norm = RMSNorm(d)
      self.head = nn.Linear(d, vocab, bias=False)
      self.inv_freq = theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)

    def forward(self, ids):
      ang = torch.arange(ids.shape[1], dtype=torch.float32)[:, None] * self.inv_freq
      cos, sin = ang.cos()[:, None], ang.sin()[:, None]  # T x 1 x H/2
      x = self.embed(ids)
      for blk in self.blocks:
        x = blk(x, cos, sin)
      return self.head(self.norm(x))

  return ByteLM()


def blt_reference(jaxtok_cfg, patching_cfg):
  """transformers' BltForCausalLM with the shapes of a jaxtok BLT (eager PyTorch, sdpa)."""
  import transformers

  c = config_to_hf(jaxtok_cfg, patching_cfg, None)
  c.pop("architectures"), c.pop("model_type"), c.pop("dtype")
  cfg = transformers.BltConfig(**c)
  cfg._attn_implementation = "sdpa"
  return transformers.BltForCausalLM(cfg)


def hf_patch_lengths(patch_starts_BxN: np.ndarray, segment_ids_BxT: np.ndarray) -> np.ndarray:
  """[B, P] bytes per patch of jaxtok's patch starts (P = the most patches of a row; padding
  bytes join the last patch, so every row's lengths sum to T as transformers expects)."""
  t = segment_ids_BxT.shape[1]
  starts = np.asarray(patch_starts_BxN[:, :t]).astype(bool).copy()
  starts[:, 0] = True
  ids = np.cumsum(starts, axis=1) - 1
  p = int(ids.max()) + 1
  out = np.zeros((ids.shape[0], p), np.int64)
  for b in range(ids.shape[0]):
    out[b] = np.bincount(ids[b], minlength=p)
  return out


class TorchArm:
  """A PyTorch model's train step on fixed batches: forward, cross-entropy, backward, AdamW."""

  def __init__(self, name: str, model, batches: list[dict], bytes_per_step: float, lr=1e-3):
    torch = _torch()
    self.name, self.model, self.bytes_per_step = name, model, bytes_per_step
    self.params = sum(p.numel() for p in model.parameters())
    try:
      self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, fused=True)
    except (RuntimeError, TypeError):
      self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    self.batches = batches
    self.times: list[float] = []
    self._run(1)  # warm-up

  def _loss(self, batch):
    torch = _torch()
    if "patch_lengths" in batch:
      out = self.model(
        input_ids=batch["inputs"], patch_lengths=batch["patch_lengths"], use_cache=False
      )
      logits = out.logits
    else:
      logits = self.model(batch["inputs"])
    return torch.nn.functional.cross_entropy(
      logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1), ignore_index=-1
    )

  def _run(self, steps: int) -> float:
    t0 = time.perf_counter()
    for i in range(steps):
      self.opt.zero_grad(set_to_none=True)
      loss = self._loss(self.batches[i % len(self.batches)])
      loss.backward()
      self.opt.step()
    self.last_loss = float(loss.detach())
    return (time.perf_counter() - t0) / steps

  def round(self, steps: int) -> None:
    self.times.append(self._run(steps))


def torch_batches(np_batches: list[dict], with_patches: bool = False) -> list[dict]:
  """jaxtok host batches as torch tensors (ids >= 0: padding reads id 0, its target is -1)."""
  torch = _torch()
  out = []
  for b in np_batches:
    tb = {
      "inputs": torch.as_tensor(np.maximum(np.asarray(b["inputs"]), 0), dtype=torch.long),
      "targets": torch.as_tensor(np.asarray(b["targets"]), dtype=torch.long),
    }
    if with_patches:
      lengths = hf_patch_lengths(np.asarray(b["patch_starts"]), np.asarray(b["segment_ids"]))
      tb["patch_lengths"] = torch.as_tensor(lengths)
    out.append(tb)
  return out


def threads() -> int:
  return _torch().get_num_threads()
