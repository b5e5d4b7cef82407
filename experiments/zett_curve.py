r"""The learning curve of a ZeTT hypernetwork run: bits/byte with hypernetwork vs FVT embeddings
on the evaluation tokenizers (config.eval.tokenizers), every config.train.eval_every steps.

  python -m experiments.train --config=configs/zett_tiny.py --workdir=DIR \
      --config.train.eval_every=10
  python -m experiments.zett_curve --workdir=DIR
"""

from absl import app, flags

from jaxtok.compare import zett as zett_compare

_WORKDIR = flags.DEFINE_string("workdir", None, "A hypernetwork training workdir.", required=True)


def main(argv):
  del argv
  print(zett_compare.curve_markdown(zett_compare.curve(_WORKDIR.value)))


if __name__ == "__main__":
  app.run(main)
