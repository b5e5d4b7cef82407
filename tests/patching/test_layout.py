"""Patch layout helpers: positions of the latent sequence."""

import jax.numpy as jnp
import numpy as np

from jaxtok.patching import segment_positions


def test_segment_positions_restart_at_every_document_by_hand():
  seg = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0], [5, 5, 5, 5, 5, 5, 5, 5], [0, 4, 4, 0, 1, 1, 1, 1]])
  assert np.asarray(segment_positions(seg)).tolist() == [
    [0, 1, 2, 0, 1, 0, 0, 1],
    [0, 1, 2, 3, 4, 5, 6, 7],
    [0, 0, 1, 0, 0, 1, 2, 3],
  ]
