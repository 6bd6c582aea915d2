"""Small real datasets that ship inside installed packages (nothing downloads at run time).

``digits`` is the UCI optical-recognition handwritten digits test set as bundled with
scikit-learn (``sklearn.datasets.load_digits``): 1,797 grey-scale 8×8 images, 10 classes,
pixel intensities 0..16.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "digits"]


class Dataset(NamedTuple):
    """Images ``x [N, H, W]`` scaled to [0, 1] and integer labels ``y [N]`` in 0..K-1."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int

    @property
    def flat(self) -> np.ndarray:
        """The images as vectors ``[N, H·W]``."""
        return self.x.reshape(self.x.shape[0], -1)


@functools.cache
def _digits_float64() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError(
            "collapse_jax.datasets.digits needs scikit-learn (pip install scikit-learn)"
        ) from err
    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int32)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def digits(dtype=np.float32) -> Dataset:
    """The 1,797 8×8 digit images in ``dtype``, in the order the file stores them."""
    x, y = _digits_float64()
    return Dataset(x=x.astype(dtype), y=y.copy(), num_classes=10)
