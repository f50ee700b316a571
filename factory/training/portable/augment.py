"""Training augmentation in numpy: the factory's tf.data pipeline and Keras 3 baselines run this one function."""

from __future__ import annotations

import numpy as np


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, flip: bool = True, masks: np.ndarray | None = None):
    """A batch of uint8 ``(N, S, S, C)`` images, each zero-padded by an eighth of its size (at least one
    pixel), randomly cropped back to ``S`` x ``S`` and, with ``flip``, mirrored left-right half the time.

    With ``masks`` (``(N, S, S)`` class indices) returns ``(images, masks)``, the masks cropped and mirrored as
    their images, their padding unlabelled (255)."""
    n, size = len(images), images.shape[1]
    pad = max(1, size // 8)
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    rows = dy[:, None] + np.arange(size)[None, :]
    cols = dx[:, None] + np.arange(size)[None, :]
    mirrored = rng.random(n) < 0.5 if flip else np.zeros(n, bool)

    def crop(batch, fill):
        padded = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), *((0, 0),) * (batch.ndim - 3)), constant_values=fill)
        crops = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        crops[mirrored] = crops[mirrored, :, ::-1]
        return crops

    return crop(images, 0) if masks is None else (crop(images, 0), crop(masks, 255))
