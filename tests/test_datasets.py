import numpy as np

from collapse_jax import datasets


def test_digits_load_offline_with_every_class_and_unit_pixels():
    data = datasets.digits()
    assert data.x.shape == (1797, 8, 8) and data.x.dtype == np.float32
    assert data.flat.shape == (1797, 64)
    assert data.num_classes == 10
    counts = np.bincount(data.y, minlength=10)
    assert counts.sum() == 1797 and counts.min() >= 174
    assert 0.0 <= data.x.min() and data.x.max() == 1.0


def test_digits_copies_do_not_alias_the_cached_arrays():
    first = datasets.digits(np.float64)
    first.y[0] = 99
    assert datasets.digits().y[0] != 99
