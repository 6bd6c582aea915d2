"""Compiled engine programs kept on disk, keyed on the traced program.

JAX's persistent compilation cache skips XLA's compile on a warm start, but it keys
each executable on the program lowered to StableHLO, so every process still traces the
program, lowers it and hashes the result. For the engine's programs (a vmapped model
inside loops and a ``shard_map``) the lowering costs about as much as the tracing,
0.15-0.3 s each on a 2-core CPU. ``Program`` keys the executable on what the lowering
is computed from instead, so a warm start traces, hashes and loads:

- the jaxpr printed in full (every equation, its parameters, nested jaxprs, avals and
  literals), the bytes of every constant and literal, each equation's context, and
  what the printer leaves out: weak types, ``inline`` flags, a mesh's devices in order;
- the input and output pytree structures (the Config's static fields among them) and
  every input's placement (sharding and device ids, in order);
- JAX's configuration (global and thread-local), the JAX, jaxlib and backend versions,
  the devices, ``XLA_FLAGS`` and the host CPU's features.

Editing a model changes the jaxpr it traces to, so stale code cannot be loaded; the
executable is the one XLA compiled, so a loaded program computes the same bits.

What a lowering would have done besides lowering is done here: jaxlib's LAPACK
kernels look up their routines on first use in a lowering, so a program with a
linear-algebra primitive has them looked up before it loads (without, it segfaults).
Not kept: programs that call back into Python or whose jaxpr prints an object
address (no stable key), executables JAX itself loaded from its cache (they
serialise again without some kernels; only a fresh compile is kept), programs of
several processes, and backends other than CPU, where loading has not been tested.

Files live in ``programs/`` under JAX's compilation-cache directory, so they are on
exactly when that cache is (see ``collapse_jax._runtime``); deleting the directory is
always safe. A file that fails to load, or to run, is reported, removed and compiled
again; a program whose key cannot be computed is compiled as usual. The files are
pickles, read only if the current user owns them and nobody else may write them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import warnings
import zlib

import jax
import numpy as np
from jax.extend import core as jcore

from collapse_jax._io import atomic_write

__all__ = ["Program"]

_SUBDIRECTORY = "programs"
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}")
_MAGIC = b"collapse_jax program 1"


class Program:
    """``jax.jit(fn, static_argnums)`` whose executables also persist on disk.

    Called like the jitted function. Without a local compilation-cache directory, on
    a backend other than CPU, or in a multi-process run, it is that jitted function.
    """

    def __init__(self, fn, static_argnums: tuple[int, ...]):
        self._jit = jax.jit(fn, static_argnums=static_argnums)
        self._static = frozenset(static_argnums)
        self._loaded: dict = {}  # (id(jaxpr), placement) -> (jaxpr, Compiled)

    def __call__(self, *args):
        directory = _directory()
        if directory is None:
            return self._jit(*args)
        dynamic = tuple(a for i, a in enumerate(args) if i not in self._static)
        traced = self._jit.trace(*args)  # after the first call, a cache lookup
        placement = _placement(dynamic)
        memo = (id(traced.jaxpr), placement)
        entry = self._loaded.get(memo)
        if entry is not None:
            return entry[1](*dynamic)
        primitives = _primitives(traced.jaxpr.jaxpr)
        key = _key(traced, placement, primitives)
        if key is not None and primitives & _lapack_primitives():
            if not _initialize_lapack():  # its lowering would; a segfault otherwise
                key = None
        path = None if key is None else os.path.join(directory, key + ".bin")
        compiled = None if path is None else _load(path, traced)
        if compiled is not None:
            try:  # a damaged file can load and fail only when run
                out = jax.block_until_ready(compiled(*dynamic))
            except Exception as err:  # noqa: BLE001  (compiled afresh below)
                _discard(path, err)
                compiled = None
        if compiled is None:
            compiled = _compile(traced, path)
            out = compiled(*dynamic)
        self._loaded[memo] = (traced.jaxpr, compiled)  # kept: its id stays unique
        return out

    def _cache_size(self) -> int:
        """Programs held in this process (the jit's own cache, and loaded ones)."""
        return self._jit._cache_size() + len(self._loaded)


def _directory() -> str | None:
    base = jax.config.jax_compilation_cache_dir
    if not base or not jax.config.jax_enable_compilation_cache:
        return None
    if "://" in str(base) or jax.process_count() > 1:
        return None
    if jax.default_backend() != "cpu":  # where loading without lowering is tested
        return None
    return os.path.join(os.fspath(base), _SUBDIRECTORY)


def _placement(leaves_of) -> tuple:
    """Each input leaf's sharding (None for host arrays, which jit places itself)."""
    return tuple(
        getattr(leaf, "sharding", None) if isinstance(leaf, jax.Array) else None
        for leaf in jax.tree.leaves(leaves_of)
    )


_cache_events = {"requests": 0, "hits": 0}  # of JAX's persistent cache, this process


def _count_cache_events(event: str, **_) -> None:
    if event == "/jax/compilation_cache/compile_requests_use_cache":
        _cache_events["requests"] += 1
    elif event == "/jax/compilation_cache/cache_hits":
        _cache_events["hits"] += 1


jax.monitoring.register_event_listener(_count_cache_events)


def _compile(traced, path):
    """Lowers and compiles; keeps the executable at ``path`` if XLA compiled it now.

    An executable that JAX loaded from its own cache serialises again without some
    of its kernels (jaxlib 0.9.0.1 on CPU: the copy loads, then fails with "Function
    ... not found"). So a program is kept only if this call asked JAX's cache and
    missed: not on a hit, and not when JAX handed back an executable it already held
    in memory (no request then).
    """
    before = dict(_cache_events)
    compiled = traced.lower().compile()
    fresh = (
        _cache_events["requests"] > before["requests"]
        and _cache_events["hits"] == before["hits"]
    )
    if path is not None and fresh:
        _store(path, compiled)
    return compiled


def _discard(path, err) -> None:
    warnings.warn(
        f"the compiled program {path} failed to run ({err}); compiling it again",
        RuntimeWarning,
        stacklevel=3,
    )
    _remove(path)


def _remove(path) -> None:
    """Removes a bad file, so that it is reported once, not in every process."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _load(path, traced):
    from jax.experimental import serialize_executable  # noqa: PLC0415

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            if not _trusted(os.fstat(f.fileno())):
                return None
            magic, ids, packed = f.read().split(b"\n", 2)
        if magic != _MAGIC:
            raise ValueError("not a program file of this version")
        blob = zlib.decompress(packed)
        by_id = {d.id: d for d in jax.devices()}
        devices = [by_id[int(i)] for i in ids.split(b",")]
        return serialize_executable.deserialize_and_load(
            blob, traced.in_tree, traced.out_tree, execution_devices=devices
        )
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001  (a stale or damaged file: compile again)
        warnings.warn(
            f"could not load the compiled program {path} ({type(err).__name__}: "
            f"{err}); compiling it again",
            RuntimeWarning,
            stacklevel=3,
        )
        _remove(path)
        return None


def _trusted(stat) -> bool:
    """A pickle is read only from this user's file that nobody else may write."""
    if not hasattr(os, "getuid"):
        return True
    return stat.st_uid == os.getuid() and not stat.st_mode & 0o022


def _store(path, compiled) -> None:
    """``magic``, the executable's device ids in order, the compressed executable."""
    from jax.experimental import serialize_executable  # noqa: PLC0415

    try:
        blob, _, _ = serialize_executable.serialize(compiled)
        devices = compiled._executable.xla_executable.local_devices()
    except Exception:  # noqa: BLE001  (not serialisable: it still runs)
        return
    ids = ",".join(str(d.id) for d in devices).encode()
    try:
        # Level 1: a fifth of the size, a few milliseconds either way.
        atomic_write(path, b"\n".join((_MAGIC, ids, zlib.compress(blob, 1))))
    except OSError as err:
        warnings.warn(
            f"could not keep the compiled program in {path} ({err})",
            RuntimeWarning,
            stacklevel=4,
        )


def _key(traced, placement, primitives) -> str | None:
    """SHA-256 of everything the compiled program depends on; None if unstable."""
    if traced.jaxpr.effects or any(p.endswith("callback") for p in primitives):
        return None  # an executable that calls back into Python is not kept
    try:
        return _digest(traced, placement)
    except Exception:  # noqa: BLE001  (something the key cannot hold: compile as usual)
        return None


def _digest(traced, placement) -> str | None:
    program = str(traced.jaxpr)
    contexts = "\n".join(sorted(set(_contexts(traced.jaxpr.jaxpr))))
    if _ADDRESS.search(program) or _ADDRESS.search(contexts):
        return None
    h = hashlib.sha256()
    texts = (
        _environment(),
        _configuration(),
        str(traced.in_tree),
        str(traced.out_tree),
        repr(traced.jaxpr.in_avals),  # the printed jaxpr leaves out weak types
        repr(traced.jaxpr.out_avals),
        repr([_describe(s) for s in placement]),
        contexts,
        program,
    )
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    for array in _constants(traced.jaxpr):
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _describe(sharding) -> str:
    """A sharding with its devices in order (its repr names a mesh's axes only)."""
    if sharding is None:
        return "host"
    mesh = getattr(sharding, "mesh", None)
    if isinstance(mesh, jax.sharding.Mesh):
        return f"{sharding!r} on {_mesh_devices(mesh)}"
    return f"{sharding!r} on {[d.id for d in sharding._device_assignment]}"


def _mesh_devices(mesh) -> str:
    return "empty" if mesh.empty else f"{mesh.axis_names} {mesh.device_ids.tolist()}"


def _configuration() -> str:
    """JAX's global settings and the thread-local ones jit keys its cache on."""
    values = sorted((k, repr(v)) for k, v in jax.config.values.items())
    try:
        from jax._src import config as jax_config  # noqa: PLC0415

        local = repr(jax_config.trace_context())
    except (ImportError, AttributeError):
        local = "unknown"
    return f"{values}\n{local}"


@functools.cache
def _environment() -> str:
    import jaxlib  # noqa: PLC0415

    backend = jax.devices()[0].client
    devices = [
        (d.platform, d.device_kind, d.id, d.process_index) for d in jax.devices()
    ]
    return "\n".join(
        (
            f"jax {jax.__version__} jaxlib {jaxlib.__version__}",
            f"{backend.platform} {backend.platform_version}",
            repr(devices),
            os.environ.get("XLA_FLAGS", ""),
            _cpu_features(),
        )
    )


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _subjaxprs(params):
    """The jaxprs (open, and closed with their constants) among equation parameters."""
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, jcore.ClosedJaxpr | jcore.Jaxpr):
                yield item


def _open(jaxpr):
    return jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr


def _equations(jaxpr):
    """Every equation of a jaxpr, those of nested jaxprs included, in order."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in _subjaxprs(eqn.params):
            yield from _equations(_open(sub))


def _primitives(jaxpr) -> set[str]:
    """Names of the primitives a jaxpr applies, nested jaxprs included."""
    return {eqn.primitive.name for eqn in _equations(jaxpr)}


@functools.cache
def _lapack_primitives() -> frozenset[str]:
    """The linear-algebra primitives, which lower to LAPACK kernels on CPU."""
    from jax._src.lax import linalg  # noqa: PLC0415

    return frozenset(
        p.name for p in vars(linalg).values() if isinstance(p, jcore.Primitive)
    )


def _initialize_lapack() -> bool:
    """jaxlib's LAPACK kernels look up their routines (from SciPy) when a lowering
    first needs them; a program loaded without lowering must have them looked up.
    False where this jaxlib offers no way to: such programs are compiled as usual."""
    try:
        from jax._src.lib import lapack  # noqa: PLC0415

        lapack._lapack.initialize()
    except (ImportError, AttributeError):
        return False
    return True


def _contexts(jaxpr):
    """Each equation's context, and what the jaxpr printer leaves out of its
    parameters: the ``inline`` flag, and the devices of a mesh, in order."""
    for eqn in _equations(jaxpr):
        yield f"{eqn.ctx!r} inline={eqn.params.get('inline')}"
        for value in eqn.params.values():
            if isinstance(value, jax.sharding.Mesh):
                yield _mesh_devices(value)


def _constants(closed):
    """Every value the program holds as data: constants and literals (printed too,
    but a printed array may be abbreviated)."""
    for const in closed.consts:
        yield np.asarray(const)
    for eqn in _equations(closed.jaxpr):
        for var in eqn.invars:
            if isinstance(var, jcore.Literal):
                yield np.asarray(var.val)
        for value in eqn.params.values():
            if isinstance(value, np.ndarray | jax.Array):
                yield np.asarray(value)
        for sub in _subjaxprs(eqn.params):
            if isinstance(sub, jcore.ClosedJaxpr):
                for const in sub.consts:
                    yield np.asarray(const)
