"""Benchmark: recursive OLS regression, one vmapped JAX sweep vs a NumPy loop.

Grid of the model-collapse issue: d = 10, T0 ∈ {32, 100, 316}, 100 generations,
200 seeds, policies ``replace`` and ``accumulate`` (fresh design each generation),
generator error ‖ŵ_n − w*‖²_Σ recorded every generation.

The NumPy reference does what published model-collapse code does: a Python loop over
seeds and generations that draws the ``T0 × d`` design and labels, refits OLS with
``np.linalg.lstsq`` and, for ``accumulate``, concatenates every block so far. The JAX
model draws the sufficient statistics (XᵀX, Xᵀy) from their exact joint law (see the
model's docstring), so part of the ratio is algorithmic, part is vmap/jit.

Run: ``python benchmarks/bench_recursive_regression.py``.
"""

from __future__ import annotations

import time

import jax
import numpy as np

import collapse_jax as cj
from collapse_jax.models import recursive_regression as m

D, T0S, GENERATIONS, SEEDS = 10, (32, 100, 316), 100, 200


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


def jax_sweep(policy: str):
    cfg = m.Config(dim=D, policy=policy, generator_samples=T0S[0], samples=D + 2)
    tr = cj.sweep(
        m, cfg, {"generator_samples": list(T0S)}, seeds=SEEDS, steps=GENERATIONS
    )
    return np.asarray(tr["test_error"])


def main():
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    rows, jax_total, np_total, jax_compiled_total = [], 0.0, 0.0, 0.0
    for policy in ("replace", "accumulate"):
        t = time.perf_counter()
        jax_sweep(policy)  # includes compilation
        first = time.perf_counter() - t
        t = time.perf_counter()
        errs = jax_sweep(policy)
        second = time.perf_counter() - t
        jax_total += first
        jax_compiled_total += second
        for g, T0 in enumerate(T0S):
            t = time.perf_counter()
            ref = numpy_reference(policy, T0, SEEDS, GENERATIONS)
            np_time = time.perf_counter() - t
            np_total += np_time
            a, b = errs[g][:, -1], ref[:, -1]
            se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
            z = (a.mean() - b.mean()) / se
            rows.append((policy, T0, a.mean(), b.mean(), se, z, np_time))
        rows.append((policy, "jax", first, second))
    print(
        f"\n{'policy':<11}{'T0':>5}{'jax mean':>11}{'numpy mean':>12}"
        f"{'SE(diff)':>10}{'z':>7}{'numpy s':>9}"
    )
    worst = 0.0
    for r in rows:
        if r[1] == "jax":
            print(
                f"{r[0]:<11} jax sweep (3 T0 x {SEEDS} seeds x {GENERATIONS} gens): "
                f"first call {r[2]:.2f} s (with compile), second {r[3]:.2f} s"
            )
            continue
        worst = max(worst, abs(r[5]))
        print(
            f"{r[0]:<11}{r[1]:>5}{r[2]:>11.4f}{r[3]:>12.4f}{r[4]:>10.4f}"
            f"{r[5]:>7.2f}{r[6]:>9.2f}"
        )
    print(
        f"\nNumPy total {np_total:.2f} s; JAX total {jax_total:.2f} s with compile, "
        f"{jax_compiled_total:.2f} s compiled"
    )
    print(
        f"speed ratio: {np_total / jax_total:.1f}x including compile, "
        f"{np_total / jax_compiled_total:.1f}x compiled"
    )
    print(
        f"final-generation means agree: max |z| = {worst:.2f} "
        f"({'within' if worst <= 4 else 'NOT within'} 4 SE)"
    )


if __name__ == "__main__":
    main()
