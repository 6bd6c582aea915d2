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
        cj.simulate(Walk, Walk.Config(), seeds=4, steps=8, every=2, block_size=2,
                    devices=jax.devices()[::-1]),  # the same devices, in another order
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
    # whole, start and advance on devices [0, 1]; whole on one; whole on [1, 0]
    programs = 5
    assert cold["lowerings"] >= programs
    assert len(cold["files"]) == programs
    warm, stderr = _run(cache, 0.25)
    assert warm["digest"] == cold["digest"]
    assert warm["lowerings"] == 0, "a warm start lowered a program again"
    assert warm["files"] == cold["files"]
    assert "compiled program" not in stderr  # no file failed to load or to run
    # Another value in observe's constant array is another program.
    edited, _ = _run(cache, 0.75)
    assert edited["lowerings"] >= programs
    assert edited["digest"] != cold["digest"]
    assert len(edited["files"]) == 2 * programs
    # Damaged files are reported and compiled again, a file others may write is
    # compiled again without a word; the bits stay the same.
    directory = tmp_path / "cache" / "programs"
    writable, *damaged = cold["files"]
    (directory / writable).chmod(0o666)
    for name in damaged:
        head = (directory / name).read_bytes().split(b"\n", 2)[:2]
        (directory / name).write_bytes(b"\n".join(head + [b"not an executable"]))
    again, stderr = _run(cache, 0.25)
    assert stderr.count("could not load the compiled program") == len(damaged)
    assert again["digest"] == cold["digest"]
    assert again["lowerings"] >= programs
    # Removed, so reported once: rewritten by a fresh compile, or gone where JAX's
    # own cache held the program (its copy cannot be kept).
    for name in damaged:
        path = directory / name
        assert not path.exists() or not path.read_bytes().endswith(b"not an executable")


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
    # A Python float is weakly typed, which the printed jaxpr does not show.
    assert _key(lambda v: v * 2, 2.0) != _key(lambda v: v * 2, np.float64(2.0))


def test_a_constant_the_key_cannot_hold_means_no_key_not_an_error():
    key = jax.random.key(0)  # a typed key: no NumPy array of its own
    assert _key(lambda v: v + jax.random.uniform(key, (3,)), jnp.ones(3)) is None


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
