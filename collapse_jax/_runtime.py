"""Process-wide JAX settings the engine relies on: every CPU core and the compile cache.

Both must be settled before JAX creates its backends, so ``collapse_jax`` applies them
on import when it can, and leaves them alone when the user has already chosen.

Environment variables:
  COLLAPSE_JAX_CPU_DEVICES: number of host (CPU) devices to create; ``1`` keeps JAX's
    default of one. Unset: one per core this process may run on.
  COLLAPSE_JAX_COMPILATION_CACHE: ``0`` turns the persistent compilation cache off; a
    path puts it there. Unset: ``$XDG_CACHE_HOME/collapse_jax/jax`` (``~/.cache/...``).
"""

from __future__ import annotations

import os
import re
import warnings

import jax

_CPU_DEVICES_ENV = "COLLAPSE_JAX_CPU_DEVICES"
_CACHE_ENV = "COLLAPSE_JAX_COMPILATION_CACHE"


def jaxlib_version() -> tuple[int, ...]:
    import jaxlib  # noqa: PLC0415

    return tuple(int(p) for p in re.findall(r"\d+", jaxlib.__version__)[:3])


def lapack_deadlocks_on_several_cpu_devices() -> bool:
    """Whether this jaxlib's batched LAPACK kernels can deadlock on several CPU devices.

    From jaxlib 0.9.1 (SVD; jax commit 460d6b5c3f) and 0.10.0 (every LAPACK kernel;
    bfd9e1fbd3) a batched kernel splits its batch into tasks on XLA's intra-op thread
    pool and blocks its pool thread until they finish. Programs on several CPU devices
    share that pool, so every pool thread can end up blocked waiting for tasks no free
    thread can run. Open-source builds stop doing this with 859992407d, which no release
    up to 0.10.2 contains. Reproducer: ``benchmarks/lapack_hang.py``.
    """
    return jaxlib_version() >= (0, 9, 1)


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge  # noqa: PLC0415

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return True  # cannot tell: do not touch settings that may already be in use


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def use_every_cpu_core() -> int | None:
    """One host device per core, so the engine can run seed blocks on all of them.

    Returns the device count it set, or None where it left JAX as it was: the user set
    ``--xla_force_host_platform_device_count`` or ``jax_num_cpu_devices``, the backends
    already exist, or this jaxlib deadlocks with several CPU devices.
    """
    requested = os.environ.get(_CPU_DEVICES_ENV, "").strip()
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.config.jax_num_cpu_devices not in (-1, None) or _backends_initialized():
        return None
    if requested:
        try:
            count = int(requested)
        except ValueError:
            raise ValueError(
                f"{_CPU_DEVICES_ENV}={requested!r} must be an integer >= 1"
            ) from None
        if count < 1:
            raise ValueError(f"{_CPU_DEVICES_ENV}={count} must be an integer >= 1")
    else:
        count = _cores()
        if count > 1 and lapack_deadlocks_on_several_cpu_devices():
            return None
    if count == 1:
        return None
    jax.config.update("jax_num_cpu_devices", count)
    return count


def l2_cache_bytes(default: int = 1 << 20) -> int:
    """Size of one core's L2 cache, from Linux sysfs; ``default`` where unknown."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            with open(os.path.join(base, index, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(base, index, "size")) as f:
                text = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return default


def cache_directory() -> str | None:
    """Where compiled programs are kept between processes; None if turned off."""
    setting = os.environ.get(_CACHE_ENV, "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if setting:
        return os.path.abspath(os.path.expanduser(setting))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "collapse_jax", "jax")


def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache unless the user configured one.

    Programs that compile in more than 0.2 s are written to :func:`cache_directory`, so
    a second run of the same experiment, test or CLI call skips XLA compilation.
    Returns the directory in use, or None.
    """
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    directory = cache_directory()
    if directory is None:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        warnings.warn(
            f"compilation cache disabled: cannot create {directory} ({err}); set "
            f"{_CACHE_ENV} to a writable path or to 0",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
