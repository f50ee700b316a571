"""Training augmentation in numpy: the factory's tf.data pipeline and Keras 3 baselines run this one function."""

from __future__ import annotations

import numpy as np


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
    """A batch of uint8 ``(N, S, S, C)`` images, each zero-padded by an eighth of its size (at least one
    pixel), randomly cropped back to ``S`` x ``S`` and, with ``flip``, mirrored left-right half the time."""
    n, size = len(images), images.shape[1]
    pad = max(1, size // 8)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    rows = dy[:, None] + np.arange(size)[None, :]
    cols = dx[:, None] + np.arange(size)[None, :]
    crops = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        mirrored = rng.random(n) < 0.5
        crops[mirrored] = crops[mirrored, :, ::-1]
    return crops
