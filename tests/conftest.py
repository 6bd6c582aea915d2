"""Test-wide JAX settings: 64-bit available (float64 configs are tested) and rank
promotion raising, so a silent broadcast in a metric or model fails loudly."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
