"""Test-wide JAX settings: 64-bit available (float64 configs are tested), and rank
promotion raising, so a silent broadcast in a metric or model fails loudly.

The persistent compilation cache is used only when COLLAPSE_JAX_COMPILATION_CACHE names
a directory: in one long run of the whole suite (jaxlib 0.9.0.1, CPU) XLA crashed with a
segmentation fault while serialising an executable for the cache; the same tests run
alone, with a fresh cache, passed.

Tests run on one CPU device unless COLLAPSE_JAX_CPU_DEVICES says otherwise: a program
for one device compiles about a third faster, and the tests whose subject is several
devices or processes (test_sharding, test_multihost, test_runtime) start their own.

Under pytest-xdist (``--dist loadgroup``, set in pyproject.toml) every file's tests run
on one worker, so module fixtures and the programs a file's tests share are built once;
the model-contract tests are grouped by model instead, to spread the largest file."""

import os
import sys

os.environ.setdefault("COLLAPSE_JAX_CPU_DEVICES", "1")

# tests/model_runs.py is shared by several test files (--import-mode=importlib does
# not put tests/ on the path itself).
sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402
import pytest  # noqa: E402

import collapse_jax  # noqa: E402, F401  (sets the CPU devices before JAX starts)
from collapse_jax import _runtime  # noqa: E402

if (
    _runtime.cache_directory() is not None
    and os.environ.get("COLLAPSE_JAX_COMPILATION_CACHE", "").strip()
):
    _runtime.enable_compilation_cache()

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """One xdist group per test file; per model for the model-contract tests."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        group = item.nodeid.split("::")[0]
        callspec = getattr(item, "callspec", None)
        model = callspec.params.get("name") if callspec else None
        if group.endswith("test_model_contract.py") and model:
            group = f"contract-{model}"
        item.add_marker(pytest.mark.xdist_group(group))
