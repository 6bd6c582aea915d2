"""OLS downstream test error vs generation for several generator sample sizes T0."""

from __future__ import annotations

import jax
import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import recursive_regression as m
from collapse_jax.report import Result
from collapse_jax.theory import recursive_regression as th

TITLE = (
    "Dohmatob, Feng, Kempe 2024 (arXiv 2402.07712), Thm 4.1 (OLS): downstream test "
    "error σ²d/(T−d−1) + n σ0² d/(T0−d−1) for several T0, power-law covariance"
)

T0S = [20, 40, 80]


def run(quick: bool = True) -> Result:
    seeds, steps = (300, 20) if quick else (2000, 50)
    cfg = m.Config(
        dim=10,
        samples=50,
        noise=1.0,
        generator_noise=1.0,
        spectrum="power_law",
        decay=1.0,
    )
    tr = cj.sweep(m, cfg, {"generator_samples": T0S}, seeds=seeds, steps=steps)
    pred = jax.vmap(lambda c: th.predict(c, tr.steps))(tr.cfg)
    agreement = cj.compare(tr, pred, z=4.0)
    return Result(
        config={
            "dim": 10,
            "samples": 50,
            "spectrum": "power_law k^-1",
            "generator_samples": T0S,
            "seeds": seeds,
            "generations": steps,
        },
        agreements={"T0 sweep": agreement},
        arrays={
            "n": tr.steps,
            "mean": tr.mean("downstream_error"),
            "se": tr.se("downstream_error"),
            "theory": np.asarray(pred["downstream_error"]),
        },
        divergences=list(tr.divergences),
        notes=(
            "Fresh Gaussian design each generation, Σ = diag(k^-1): the OLS formula "
            "does not depend on Σ. Downstream OLS on T = 50 samples, σ = σ0 = 1."
        ),
    )


def plot(result: Result):
    fig, axes = plotting.figure()
    ax = axes[0, 0]
    a = result.arrays
    for g, T0 in enumerate(T0S):
        color = plotting.simulation_band(
            ax, a["n"], a["mean"][g], a["se"][g], label=f"T0 = {T0}"
        )
        plotting.theory_line(ax, a["n"], a["theory"][g], color=color, label=None)
    ax.set_xlabel("generation n")
    ax.set_ylabel("downstream excess risk")
    ax.legend(title="dashed: theory")
    return fig
