"""Process-wide settings: one host device per core, and the persistent compilation
cache with its opt-out. Subprocesses: both must be set before JAX starts."""

import os
import subprocess
import sys

import jax

from collapse_jax import _runtime

PROBE = (
    "import collapse_jax, jax; from collapse_jax import _runtime; "
    "print(jax.local_device_count(), _runtime.enable_compilation_cache())"
)


def _probe(**env):
    full = dict(os.environ, JAX_PLATFORMS="cpu")
    for name in ("XLA_FLAGS", "COLLAPSE_JAX_CPU_DEVICES"):
        full.pop(name, None)
    full.update({k: v for k, v in env.items() if v is not None})
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=full, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    devices, cache = out.stdout.split()
    return int(devices), cache


def test_import_creates_one_cpu_device_per_core(tmp_path):
    cores = len(os.sched_getaffinity(0))
    expected = 1 if _runtime.lapack_deadlocks_on_several_cpu_devices() else cores
    devices, _ = _probe(COLLAPSE_JAX_COMPILATION_CACHE=str(tmp_path))
    assert devices == expected
    assert _probe(COLLAPSE_JAX_CPU_DEVICES="1")[0] == 1


def test_compilation_cache_defaults_to_the_user_cache_and_can_be_turned_off(tmp_path):
    _, cache = _probe(XDG_CACHE_HOME=str(tmp_path), COLLAPSE_JAX_COMPILATION_CACHE="")
    assert cache == str(tmp_path / "collapse_jax" / "jax")
    assert _probe(COLLAPSE_JAX_COMPILATION_CACHE="0")[1] == "None"


def test_the_test_suite_uses_the_cache_only_when_a_directory_is_named():
    asked = os.environ.get("COLLAPSE_JAX_COMPILATION_CACHE", "").strip()
    if asked and _runtime.cache_directory() is not None:
        assert jax.config.jax_compilation_cache_dir == _runtime.cache_directory()
    else:  # see tests/conftest.py for why the default is off
        assert not jax.config.jax_compilation_cache_dir
