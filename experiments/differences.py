"""Prints the README's table of deliberate differences from the BLT reference.

python -m experiments.differences
"""

from absl import app

from jaxtok.models import reference


def main(argv):
  del argv
  print(reference.markdown(), end="")


if __name__ == "__main__":
  app.run(main)
