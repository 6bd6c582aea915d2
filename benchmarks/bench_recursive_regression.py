"""Benchmark: recursive OLS regression, one vmapped JAX sweep vs a NumPy loop.

Grid of the model-collapse issue: d = 10, T0 ∈ {32, 100, 316}, 100 generations,
200 seeds, policies ``replace`` and ``accumulate`` (fresh design each generation),
generator error ‖ŵ_n − w*‖²_Σ recorded every generation.

The NumPy reference does what published model-collapse code does: a Python loop over
seeds and generations that draws the ``T0 × d`` design and labels, refits OLS with
``np.linalg.lstsq`` and, for ``accumulate``, concatenates every block so far. The JAX
model draws the sufficient statistics (XᵀX, Xᵀy) from their exact joint law (see the
model's docstring), so part of the ratio is algorithmic, part is vmap/jit. Both
compute the generator error only: the JAX run uses the model's ``init`` and ``step``
with ``observe`` reduced to ``test_error`` (the NumPy loop fits no downstream model).

Each measurement runs in a fresh process with the persistent compilation cache
(``collapse_jax._runtime.enable_compilation_cache``) in a new directory: the first
process finds it empty (cold cache), the later ones find the programs the first one
wrote (warm cache: JAX's compiled executables and the engine's programs, which skip
lowering; see ``collapse_jax._programs``). In each process: one JAX call including tracing and compilation
(or cache loading; the import of JAX is printed, not counted, as NumPy's is not),
``--repeats`` compiled calls, and the NumPy loop (one BLAS thread, its fastest
setting here), in the same process. Printed: the ratios NumPy / JAX including
compilation (cold and warm cache) and compiled-only, as median [min, max] over the
processes (and repeats), with the load average, since the machine may be shared.

Run: ``python benchmarks/bench_recursive_regression.py [--warm 2] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

D, T0S, GENERATIONS, SEEDS = 10, (32, 100, 316), 100, 200
POLICIES = ("replace", "accumulate")


def numpy_reference(policy: str, T0: int, seeds: int, generations: int):
    """``[seeds, generations + 1]`` generator errors from a plain NumPy loop."""
    out = np.zeros((seeds, generations + 1))
    for s in range(seeds):
        rng = np.random.default_rng(s)
        u = rng.standard_normal(D)
        w_true = u / np.linalg.norm(u)
        w = w_true.copy()
        X_all, y_all = np.zeros((0, D)), np.zeros(0)
        for n in range(1, generations + 1):
            X = rng.standard_normal((T0, D))
            y = X @ w + rng.standard_normal(T0)
            if policy == "accumulate":
                X_all, y_all = np.vstack([X_all, X]), np.concatenate([y_all, y])
                X, y = X_all, y_all
            w = np.linalg.lstsq(X, y, rcond=None)[0]
            out[s, n] = np.sum((w - w_true) ** 2)
    return out


def _generator_only():
    """The model with ``observe`` reduced to the generator error."""
    from collapse_jax.models import recursive_regression as m  # noqa: PLC0415

    def observe(state, cfg):
        return {"test_error": m._excess_risk(state.w_gen, state.w_true, cfg)}

    return types.SimpleNamespace(
        __name__="recursive_regression_generator_only",
        Config=m.Config,
        State=m.State,
        init=m.init,
        step=m.step,
        observe=observe,
    )


def _jax_sweeps(model) -> dict[str, np.ndarray]:
    import collapse_jax as cj  # noqa: PLC0415

    out = {}
    for policy in POLICIES:
        cfg = model.Config(dim=D, policy=policy, generator_samples=T0S[0], samples=D)
        tr = cj.sweep(
            model, cfg, {"generator_samples": list(T0S)}, seeds=SEEDS, steps=GENERATIONS
        )
        out[policy] = np.asarray(tr["test_error"])
    return out


def measure(repeats: int) -> dict:
    """One process: JAX first call, compiled repeats, NumPy loop; times in seconds."""
    t = time.perf_counter()
    import collapse_jax  # noqa: PLC0415, F401
    from collapse_jax import _runtime  # noqa: PLC0415

    cache = _runtime.enable_compilation_cache()
    model = _generator_only()
    imports = time.perf_counter() - t  # as `import numpy` is not counted for NumPy
    t = time.perf_counter()
    errs = _jax_sweeps(model)
    first = time.perf_counter() - t
    compiled = []
    for _ in range(repeats):
        t = time.perf_counter()
        _jax_sweeps(model)
        compiled.append(time.perf_counter() - t)
    t = time.perf_counter()
    refs = {
        p: [numpy_reference(p, T0, SEEDS, GENERATIONS) for T0 in T0S] for p in POLICIES
    }
    numpy_time = time.perf_counter() - t
    z = []
    for p in POLICIES:
        for g in range(len(T0S)):
            a, b = errs[p][g][:, -1], refs[p][g][:, -1]
            se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
            z.append(float((a.mean() - b.mean()) / se))
    return {
        "cache": cache,
        "imports": imports,
        "first": first,
        "compiled": compiled,
        "numpy": numpy_time,
        "z": z,
        "load": os.getloadavg(),
    }


def _spread(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):.1f}x [{v.min():.1f}, {v.max():.1f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm", type=int, default=2, help="warm-cache processes")
    parser.add_argument("--repeats", type=int, default=5, help="compiled calls each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.repeats)))
        return
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        # One BLAS thread for NumPy: on these 10-column problems more threads only
        # add synchronisation (the loop ran 1.4x slower with two). JAX's XLA thread
        # pool is not OpenBLAS's, so this leaves it as it is.
        blas = {v: "1" for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        env = {**os.environ, **blas, "COLLAPSE_JAX_COMPILATION_CACHE": cache}
        for i in range(1 + args.warm):
            cmd = [sys.executable, __file__, "--child", "--repeats", str(args.repeats)]
            done = subprocess.run(
                cmd, env=env, capture_output=True, text=True, check=True
            )
            run = json.loads(done.stdout.strip().splitlines()[-1])
            run["kind"] = "cold" if i == 0 else "warm"
            runs.append(run)
            print(
                f"{run['kind']:>4} cache: JAX first call {run['first']:.2f} s (import "
                f"{run['imports']:.2f} s not counted), compiled "
                f"median {np.median(run['compiled']):.3f} s "
                f"[{min(run['compiled']):.3f}, {max(run['compiled']):.3f}], "
                f"NumPy {run['numpy']:.1f} s; max |z| {max(map(abs, run['z'])):.2f}; "
                f"load {run['load'][0]:.2f}",
                flush=True,
            )
    cold = [r["numpy"] / r["first"] for r in runs if r["kind"] == "cold"]
    warm = [r["numpy"] / r["first"] for r in runs if r["kind"] == "warm"]
    compiled = [r["numpy"] / c for r in runs for c in r["compiled"]]
    worst = max(abs(z) for r in runs for z in r["z"])
    print(
        f"\n{len(T0S)} T0 x {SEEDS} seeds x {GENERATIONS} generations x "
        f"{len(POLICIES)} policies, d = {D}"
    )
    print(f"NumPy / JAX including compilation, cold cache: {_spread(cold)}")
    if warm:
        print(f"NumPy / JAX including compilation, warm cache: {_spread(warm)}")
    print(f"NumPy / JAX compiled only: {_spread(compiled)}")
    print(
        f"final-generation means agree: max |z| = {worst:.2f} "
        f"({'within' if worst <= 4 else 'NOT within'} 4 SE)"
    )
    loads = [r["load"][0] for r in runs]
    print(f"1-minute load average during the runs: {min(loads):.2f}..{max(loads):.2f}")


if __name__ == "__main__":
    main()
