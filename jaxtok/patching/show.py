"""See how a text is patched: entropy per byte, the threshold, the patch boundaries.

`patch_view` computes everything; `write_png` draws it like the BLT paper's
figure (entropy curve over the bytes, threshold line, a vertical line at
every patch start) and `write_html` shows the text with alternating colours
per patch and each byte's entropy on hover. matplotlib is optional
(`pip install 'jaxtok[plots]'`) and only needed for the PNG.
"""

from __future__ import annotations

import dataclasses
import html

import numpy as np

from jaxtok import patching
from jaxtok.data import codec
from jaxtok.patching.entropy import per_byte_entropies


@dataclasses.dataclass
class PatchView:
  data: bytes  # the text's bytes (no BOS)
  entropies: np.ndarray | None  # H(x_t | x_<t) per byte of `data` (nats); None without a model
  starts: np.ndarray  # bool per byte of `data`: starts a patch
  pcfg: patching.PatchingConfig

  @property
  def patches(self) -> list[bytes]:
    bounds = list(np.flatnonzero(self.starts)) + [len(self.data)]
    if not bounds or bounds[0] != 0:
      bounds = [0] + bounds
    return [self.data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def patch_view(text: bytes, pcfg: patching.PatchingConfig, entropy_model=None) -> PatchView:
  """Entropies (if a model is given) and patch starts of `text`, as one document after BOS."""
  if not text:
    raise ValueError("the text to show is empty")
  ids = codec.encode(text, add_eos=False)[None]
  n = ids.shape[1]
  pos = np.arange(n, dtype=np.int32)[None]
  seg = np.ones((1, n), np.int32)
  h = None
  if entropy_model is not None:
    h = per_byte_entropies(entropy_model.next_entropies(ids, seg, pos))[:, :n]
  elif pcfg.scheme == "entropy":
    raise ValueError("entropy patching needs the entropy model")
  starts = np.asarray(patching.patch_starts(pcfg, ids, pos, seg, h))[0]
  # Drop the BOS column: views are over the text's bytes.
  return PatchView(
    data=text, entropies=None if h is None else h[0, 1:], starts=starts[1:], pcfg=pcfg
  )


def _label(b: int) -> str:
  c = chr(b)
  return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(c, c if 32 < b < 127 else f"\\x{b:02x}")


def write_png(view: PatchView, path: str, *, bytes_per_row: int = 80) -> str:
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    raise ImportError(
      "show_patches draws with matplotlib, which is not installed: "
      "pip install 'jaxtok[plots]' (or pip install matplotlib)"
    ) from None
  n = len(view.data)
  rows = max(1, -(-n // bytes_per_row))
  fig, axes = plt.subplots(
    rows, 1, figsize=(max(8, bytes_per_row * 0.16), 2.4 * rows), squeeze=False
  )
  monotonic = view.pcfg.scheme == "entropy" and view.pcfg.rule == "monotonic"
  for r, ax in enumerate(axes[:, 0]):
    lo, hi = r * bytes_per_row, min(n, (r + 1) * bytes_per_row)
    x = np.arange(lo, hi)
    if view.entropies is not None:
      ax.plot(x, view.entropies[lo:hi], color="tab:blue", marker=".", lw=1, label="entropy (nats)")
      if monotonic:
        diff = np.diff(view.entropies, prepend=0.0)
        ax.plot(x, diff[lo:hi], color="tab:green", lw=0.8, label="H_t - H_{t-1}")
      if view.pcfg.scheme == "entropy" and view.pcfg.rule != "topk":
        ax.axhline(view.pcfg.threshold, color="tab:red", ls="--", lw=1, label="threshold")
    for s in np.flatnonzero(view.starts[lo:hi]) + lo:
      ax.axvline(s - 0.5, color="0.6", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([_label(b) for b in view.data[lo:hi]], fontsize=7, family="monospace")
    ax.set_xlim(lo - 0.5, lo + bytes_per_row - 0.5)
    if r == 0 and view.entropies is not None:
      ax.legend(loc="upper right", fontsize=7)
  scheme = view.pcfg.scheme + (f" ({view.pcfg.rule})" if view.pcfg.scheme == "entropy" else "")
  axes[0, 0].set_title(
    f"{scheme} patches: {len(view.patches)} for {n} bytes "
    f"({n / max(1, len(view.patches)):.2f} bytes/patch); grey lines = patch starts"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_html(view: PatchView, path: str, png_name: str | None = None) -> str:
  spans, i = [], 0
  for k, patch in enumerate(view.patches):
    chars = []
    for b in patch:
      title = "" if view.entropies is None else f' title="H = {view.entropies[i]:.3f} nats"'
      chars.append(f"<span{title}>{html.escape(_label(b))}</span>")
      i += 1
    spans.append(f'<span class="p{k % 2}">{"".join(chars)}</span>')
  n = len(view.data)
  head = (
    f"<p>{len(view.patches)} patches for {n} bytes "
    f"({n / max(1, len(view.patches)):.2f} bytes/patch), scheme {html.escape(view.pcfg.scheme)}"
    + (f", threshold {view.pcfg.threshold:.4g}" if view.pcfg.scheme == "entropy" else "")
    + ".</p>"
  )
  img = f'<p><img src="{html.escape(png_name)}" style="max-width:100%"></p>' if png_name else ""
  page = (
    "<!doctype html><meta charset='utf-8'><title>BLT patches</title><style>"
    "body{font-family:sans-serif} .t{font-family:monospace;font-size:15px;line-height:1.9}"
    ".p0{background:#cfe3ff} .p1{background:#ffe0b3} .t span span{padding:0 1px}</style>"
    f"{head}{img}<div class='t'>{''.join(spans)}</div>"
  )
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
