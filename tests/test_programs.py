"""The engine's on-disk programs (collapse_jax._programs): a warm start loads the
executable without lowering and computes the same bits (a LAPACK kernel among them);
a changed program, a damaged file or a program without a stable key compiles again. Whole runs go in subprocesses
with a timeout (each needs a fresh process and its own cache directory); the key's
contents are checked here on traced programs, which compile nothing."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import _programs

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import struct
    import collapse_jax as cj
    from collapse_jax import _runtime

    directory = _runtime.enable_compilation_cache()
    lowerings = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **_: lowerings.append(event)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None
    )
    weights = np.array([1.0, float(sys.argv[1]), 0.5])  # an array constant

    class Walk:
        @struct.dataclass
        class Config:
            decay: float = 0.9

        @staticmethod
        def init(key, cfg):
            return {"key": key, "x": jnp.zeros(3)}

        @staticmethod
        def step(state, cfg):
            key, sub = jax.random.split(state["key"])
            x = cfg.decay * state["x"] + jax.random.normal(sub, (3,))
            return {"key": key, "x": x}

        @staticmethod
        def observe(state, cfg):  # eigvalsh: a LAPACK kernel on CPU
            x = state["x"]
            return {"projection": jnp.sum(weights * x),
                    "top": jnp.linalg.eigvalsh(jnp.outer(x, x) + jnp.eye(3))[-1]}

    runs = [
        cj.simulate(Walk, Walk.Config(), seeds=4, steps=8, every=2, block_size=2),
        cj.simulate(Walk, Walk.Config(), seeds=4, steps=8, every=2, block_size=2,
                    chunk=4),
        cj.simulate(Walk, Walk.Config(), seeds=4, steps=8, every=2, block_size=2,
                    devices=1),
    ]  # fmt: skip
    digest = hashlib.sha256(
        b"".join(r[m].tobytes() for r in runs for m in ("projection", "top"))
    )
    programs = os.path.join(directory, "programs") if directory else None
    files = sorted(os.listdir(programs)) if programs and os.path.isdir(programs) else []
    print(json.dumps({"digest": digest.hexdigest(), "lowerings": len(lowerings),
                      "files": files, "devices": jax.local_device_count()}))
    """
)


def _run(cache: str, weight: float) -> tuple[dict, str]:
    """One fresh process: both runs of the walk; its report and its stderr."""
    env = dict(os.environ, COLLAPSE_JAX_COMPILATION_CACHE=cache)
    env["COLLAPSE_JAX_CPU_DEVICES"] = "2"
    try:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(weight)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a run with the program cache hung (no result in 240 s)")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_a_warm_start_loads_the_same_program_and_a_changed_one_compiles(tmp_path):
    cache = str(tmp_path / "cache")
    plain, _ = _run("0", 0.25)
    cold, _ = _run(cache, 0.25)
    assert cold["devices"] == 2
    assert cold["digest"] == plain["digest"]  # the cache changes no bits
    # whole, start and advance on both devices; whole on one
    assert cold["lowerings"] >= 4
    assert len(cold["files"]) == 4
    warm, _ = _run(cache, 0.25)
    assert warm["digest"] == cold["digest"]
    assert warm["lowerings"] == 0, "a warm start lowered a program again"
    assert warm["files"] == cold["files"]
    # Another value in observe's constant array is another program.
    edited, _ = _run(cache, 0.75)
    assert edited["lowerings"] >= 4
    assert edited["digest"] != cold["digest"]
    assert len(edited["files"]) == 8
    # A damaged file is reported and compiled again; the bits stay the same.
    programs = tmp_path / "cache" / "programs"
    for name in cold["files"]:
        head = (programs / name).read_bytes().split(b"\n", 2)[:2]
        (programs / name).write_bytes(b"\n".join(head + [b"not an executable"]))
    damaged, stderr = _run(cache, 0.25)
    assert "could not load the compiled program" in stderr
    assert damaged["digest"] == cold["digest"]
    assert damaged["lowerings"] >= 4


def _key(fn, *args, placement=()):
    traced = jax.jit(fn).trace(*args)
    primitives = _programs._primitives(traced.jaxpr.jaxpr)
    return _programs._key(traced, placement, primitives)


def test_the_key_covers_constants_literals_code_and_placement():
    # (Placement on other devices is covered by the runs on 1 and 2 devices above.)
    x = jnp.ones(3, jnp.float32)
    base = _key(lambda v: v * np.array([1.0, 2.0, 3.0], np.float32), x)
    assert base is not None
    assert base == _key(lambda v: v * np.array([1.0, 2.0, 3.0], np.float32), x)
    assert base != _key(lambda v: v * np.array([1.0, 2.0, 4.0], np.float32), x)
    assert _key(lambda v: v * 2.0, x) != _key(lambda v: v * 2.5, x)
    assert _key(lambda v: v * 2.0, x) != _key(lambda v: v + 2.0, x)
    assert _key(lambda v: v * 2.0, x) != _key(lambda v: v * 2.0, x.astype(jnp.int32))
    placed = _programs._placement((x, np.ones(3)))
    assert _key(lambda v: v * 2.0, x) != _key(lambda v: v * 2.0, x, placement=placed)


def test_programs_calling_python_or_printing_addresses_are_not_kept():
    def calls(fn):
        return lambda v: jax.pure_callback(
            fn, jax.ShapeDtypeStruct(v.shape, v.dtype), v
        )

    assert _key(calls(np.sin), jnp.ones(3)) is None  # a callback, however printed
    assert _key(calls(lambda v: v), jnp.ones(3)) is None

    def prints(v):
        jax.debug.print("{}", v)
        return v

    assert _key(prints, jnp.ones(3)) is None
