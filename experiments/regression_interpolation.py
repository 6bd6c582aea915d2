"""Minimum-norm (over-parametrised) generators: exponential forgetting of w*."""

from __future__ import annotations

import jax
import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import recursive_regression as m
from collapse_jax.report import Result
from collapse_jax.theory import recursive_regression as th

TITLE = (
    "Dohmatob, Feng, Kempe 2024 (arXiv 2402.07712), over-parametrised regime T0 < d: "
    "minimum-norm generators keep a T0/d share of w* per generation, so the error "
    "rises exponentially fast to r² + v/(1 − T0/d); one fixed design loses (1 − T0/d)r² "
    "once, then adds noise linearly"
)

D = 30
T0S = [6, 15, 24]


def run(quick: bool = True) -> Result:
    seeds, steps = (200, 10) if quick else (2000, 30)
    cfg = m.Config(
        dim=D,
        samples=D + 10,
        generator_samples=T0S[0],
        generator_noise=0.3,
        interpolate=True,
    )
    agreements, arrays, divergences = {}, {}, []
    for label, fixed in (("fresh", False), ("fixed", True)):
        tr = cj.sweep(
            m,
            cfg.replace(fixed_design=fixed),
            {"generator_samples": T0S},
            seeds=seeds,
            steps=steps,
        )
        pred = jax.vmap(lambda c, t=tr.steps: th.predict(c, t))(tr.cfg)
        agreements[f"{label} design"] = cj.compare(
            tr, {"test_error": pred["test_error"]}, z=4.0
        )
        arrays[f"{label}_mean"] = tr.mean("test_error")
        arrays[f"{label}_se"] = tr.se("test_error")
        arrays[f"{label}_theory"] = np.asarray(pred["test_error"])
        arrays["n"] = tr.steps
        divergences += list(tr.divergences)
    arrays["limit"] = np.array(
        [float(th.generator_limit(cfg.replace(generator_samples=t))) for t in T0S]
    )
    return Result(
        config={
            "dim": D,
            "generator_samples": T0S,
            "generator_noise": 0.3,
            "interpolate": True,
            "seeds": seeds,
            "generations": steps,
        },
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            "Each generation labels T0 < d isotropic Gaussian inputs with the previous "
            "generator (σ0 = 0.3) and refits the minimum-norm interpolator X⁺y. Exact "
            "theory (derived in theory/recursive_regression.md): fresh designs "
            "(1 − q^n)(r² + v/(1 − q)), q = T0/d, v = σ0² T0/(d − T0 − 1) (dotted: "
            "the limit); one fixed design (1 − q)r² + n v for n ≥ 1."
        ),
    )


def plot(result: Result):
    fig, axes = plotting.figure(nrows=1, ncols=2)
    a = result.arrays
    for ax, label in zip(axes[0], ("fresh", "fixed"), strict=True):
        for g, T0 in enumerate(T0S):
            color = plotting.simulation_band(
                ax,
                a["n"],
                a[f"{label}_mean"][g],
                a[f"{label}_se"][g],
                label=f"T0/d = {T0 / D:.1f}",
            )
            plotting.theory_line(
                ax, a["n"], a[f"{label}_theory"][g], color=color, label=None
            )
            if label == "fresh":
                ax.axhline(a["limit"][g], color=color, ls=":", lw=0.8)
        ax.set_title(f"{label} design each generation" if label == "fresh" else
                     "one fixed design")  # fmt: skip
        ax.set_xlabel("generation n")
        ax.set_ylabel("‖ŵ_n − w*‖²")
        ax.legend(title="dashed: theory")
    return fig
