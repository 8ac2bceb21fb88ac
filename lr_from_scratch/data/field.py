"""A drawing made into an MNIST digit: :func:`to_mnist_field` reduces ink to the 28x28 field MNIST's digits lie in.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio, anti-aliasing giving grey
levels, then centred in a 28x28 field by their centre of mass (LeCun, Cortes and Burges). The same steps, for
an image of ink of any size (0 no ink, 1 full ink):

1. crop to the ink's bounding box, ``(h, w)``;
2. resample by area averaging to ``(round(20 h / m), round(20 w / m))`` with ``m = max(h, w)``: the longer
   side becomes 20 pixels, and each new pixel is the mean of the ink it covers (a pixel it covers in part
   counts by the part's area), which gives the grey levels;
3. put that in a 28x28 field of zeros, shifted by whole pixels so that its centre of mass, in pixel
   indices, lands as near as they allow to (14, 14), and kept whole inside the field.

MNIST's description says no more than "centred by its centre of mass"; its own digits show the rule: the
centre of mass (14, 14), rounded to the nearest pixel with halves down. Put through these steps, each of its
digits whose longer side is 20 pixels comes out pixel for pixel as it was, all but one of 69,984 (the tests
check them all).

``round`` rounds halves down, taking anything within 1e-9 of a half for one, so that sums added in another
order agree.
``docs/javascripts/demo/model.js`` does the same in JavaScript for the docs' drawing page; the tests hold the
two within 1e-12 of each other.
"""

from __future__ import annotations

import math

import numpy as np

FIELD = 28  #: the side of MNIST's field
BOX = 20  #: the side of the box a digit is scaled to fit
TIE = 1e-9  #: how near to a half :func:`round_half_down` takes for one


def round_half_down(x: float) -> int:
    """``x`` to the nearest whole number, halves (to within :data:`TIE`) down, as MNIST placed its digits."""
    return math.ceil(x - 0.5 - TIE)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): row ``i`` is the share of each input pixel ``[j, j + 1)`` in output pixel ``i``'s span
    ``[i s, i s + s)``, ``s = n_in / n_out``, divided by ``s``; so ``area_weights(n_in, n_out) @ v`` averages a
    line ``v`` of ``n_in`` pixels into ``n_out``."""
    span = n_in / n_out
    low = np.arange(n_out)[:, None] * span
    pixel = np.arange(n_in)[None, :]
    overlap = np.minimum(pixel + 1, low + span) - np.maximum(pixel, low)
    return np.where(overlap > 0, overlap, 0.0) / span


def to_mnist_field(ink: np.ndarray) -> np.ndarray:
    """(H, W) ink in [0, 1] -> (28, 28) float64 grey levels in [0, 1], the steps of the module docstring.

    No ink gives an empty field. ``field * 255`` is on the scale of MNIST's bytes, so the training scaling
    applies as it is: ``x = (field - mean) / std``.
    """
    ink = np.asarray(ink, dtype=np.float64)
    field = np.zeros((FIELD, FIELD))
    rows, cols = np.nonzero(ink > 0)
    if len(rows) == 0:
        return field
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    longest = max(h, w)
    th, tw = max(1, round_half_down(BOX * h / longest)), max(1, round_half_down(BOX * w / longest))
    small = area_weights(h, th) @ crop @ area_weights(w, tw).T
    mass = small.sum()
    centre = FIELD / 2  # where MNIST's digits have their centre of mass
    top = min(max(round_half_down(centre - np.arange(th) @ small.sum(axis=1) / mass), 0), FIELD - th)
    left = min(max(round_half_down(centre - small.sum(axis=0) @ np.arange(tw) / mass), 0), FIELD - tw)
    field[top : top + th, left : left + tw] = small
    return field
