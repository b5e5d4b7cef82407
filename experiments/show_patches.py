r"""Draw how a text is patched (entropy per byte, threshold, patch boundaries).

  python -m experiments.show_patches --workdir=workdirs/blt_entropy --text='Daenerys Targaryen'
  python -m experiments.show_patches --workdir=workdirs/entropy_model --text=... --threshold=2.0

--workdir is a BLT workdir (its patching config) or an entropy model's workdir
(BLT's global rule). Writes OUT.png (needs matplotlib: pip install 'jaxtok[plots]')
and OUT.html.
"""

import os

from absl import flags, logging

from experiments import cli
from jaxtok import paths
from jaxtok.models import entropy_model
from jaxtok.patching import show

_WORKDIR = flags.DEFINE_string("workdir", None, "BLT or entropy-model workdir.", required=True)
_TEXT = flags.DEFINE_string("text", None, "Text to patch (UTF-8).", required=True)
_OUT = flags.DEFINE_string("out", None, "Output path without extension (default WORKDIR/patches).")
_THRESHOLD = flags.DEFINE_float("threshold", None, "Override the entropy threshold (nats).")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if paths.is_url(_WORKDIR.value) and not _OUT.value:  # the pages are written with open()
    raise paths.UnsupportedPathError("--workdir is a URL: give --out, a local path for the pages")
  out = _OUT.value or os.path.join(_WORKDIR.value, "patches")
  pcfg, em = entropy_model.patching_from_workdir(_WORKDIR.value, threshold=_THRESHOLD.value)
  view = show.patch_view(_TEXT.value.encode(), pcfg, em)
  png = show.write_png(view, out + ".png")
  page = show.write_html(view, out + ".html", png_name=os.path.basename(png))
  print(" | ".join(p.decode("utf-8", errors="replace") for p in view.patches))
  print(f"wrote {png} and {page}")


if __name__ == "__main__":
  cli.run(main)
