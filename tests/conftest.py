"""Test-wide JAX settings: 64-bit available (float64 configs are tested), rank
promotion raising, so a silent broadcast in a metric or model fails loudly, and the
persistent compilation cache (set COLLAPSE_JAX_COMPILATION_CACHE=0 to test without)."""

import jax

import collapse_jax  # noqa: F401  (one host device per core, before JAX starts)
from collapse_jax import _runtime

_runtime.enable_compilation_cache()

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
