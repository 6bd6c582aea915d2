"""Test-wide JAX settings: 64-bit available (float64 configs are tested), and rank
promotion raising, so a silent broadcast in a metric or model fails loudly.

The persistent compilation cache is used only when COLLAPSE_JAX_COMPILATION_CACHE names
a directory: in one long run of the whole suite (jaxlib 0.9.0.1, CPU) XLA crashed with a
segmentation fault while serialising an executable for the cache; the same tests run
alone, with a fresh cache, passed.

Tests run on one CPU device unless COLLAPSE_JAX_CPU_DEVICES says otherwise: a program
for one device compiles about a third faster, and the tests whose subject is several
devices or processes (test_sharding, test_multihost, test_runtime) start their own."""

import os

os.environ.setdefault("COLLAPSE_JAX_CPU_DEVICES", "1")

import jax  # noqa: E402

import collapse_jax  # noqa: E402, F401  (sets the CPU devices before JAX starts)
from collapse_jax import _runtime  # noqa: E402

if (
    _runtime.cache_directory() is not None
    and os.environ.get("COLLAPSE_JAX_COMPILATION_CACHE", "").strip()
):
    _runtime.enable_compilation_cache()

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
