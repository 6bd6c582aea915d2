"""collapse_jax.random: the numbers of jax.random, drawn flat."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import random as cr

SHAPES = [(), (1,), (10,), (16,), (44, 10), (3, 4, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_draws_equal_jax_random_bit_for_bit(shape, dtype):
    key = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(
        cr.normal(key, shape, dtype), jax.random.normal(key, shape, dtype)
    )
    np.testing.assert_array_equal(
        cr.uniform(key, shape, dtype, -2.0, 3.0),
        jax.random.uniform(key, shape, dtype, -2.0, 3.0),
    )


def test_vmapped_draws_equal_jax_random_and_keep_their_shape():
    keys = jax.random.split(jax.random.PRNGKey(8), 5)
    ours = jax.jit(jax.vmap(lambda k: cr.normal(k, (4, 3))))(keys)
    theirs = jax.jit(jax.vmap(lambda k: jax.random.normal(k, (4, 3))))(keys)
    assert ours.shape == (5, 4, 3)
    np.testing.assert_array_equal(ours, theirs)
