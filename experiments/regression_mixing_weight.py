"""Error vs real-data weight under fresh-real-data mixing; golden-ratio optimum."""

from __future__ import annotations

import jax
import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import recursive_regression as m
from collapse_jax.report import Result
from collapse_jax.theory import recursive_regression as th

TITLE = (
    "He, Xu, Cheng 2025 (arXiv 2502.18049): with equal real and synthetic data each "
    "generation, the long-run optimal real-data weight is 1/φ ≈ 0.618 (regression)"
)


def run(quick: bool = True) -> Result:
    seeds, steps = (300, 20) if quick else (2000, 60)
    weights = np.round(np.linspace(0.1, 1.0, 10), 3)
    cfg = m.Config(dim=10, generator_samples=20, samples=40, policy="mix")
    tr = cj.sweep(m, cfg, {"real_weight": weights}, seeds=seeds, steps=steps)
    pred = jax.vmap(lambda c: th.predict(c, tr.steps))(tr.cfg)
    agreement = cj.compare(tr, {"test_error": pred["test_error"]}, z=4.0)
    dense = np.linspace(0.05, 1.0, 200)
    curve = np.asarray(
        jax.vmap(lambda w: th.generator_error(cfg.replace(real_weight=w), steps))(dense)
    )
    return Result(
        config={
            "dim": 10,
            "generator_samples": 20,
            "policy": "mix",
            "real_weight": weights,
            "seeds": seeds,
            "generations": steps,
        },
        agreements={"weight sweep": agreement},
        arrays={
            "weights": weights,
            "mean": tr.mean("test_error")[:, -1],
            "se": tr.se("test_error")[:, -1],
            "dense": dense,
            "curve": curve,
            "optimum_n": float(th.optimal_real_weight(cfg, steps)),
            "golden": th.golden_ratio_weight(),
        },
        divergences=list(tr.divergences),
        notes=(
            "Each generation labels T0 = 20 inputs with the true model (weight ω) and "
            "with the previous generator (weight 1 − ω), σ0 = 1; OLS. Exact theory "
            "c(ω² + (1−ω)²) Σ_{k<n} (1−ω)^{2k}; its n → ∞ minimiser is 1/φ."
        ),
    )


def plot(result: Result):
    fig, axes = plotting.figure()
    ax = axes[0, 0]
    a = result.arrays
    plotting.simulation_band(
        ax,
        a["weights"],
        a["mean"],
        a["se"],
        marker="o",
        label="simulation (last generation)",
    )
    plotting.theory_line(ax, a["dense"], a["curve"])
    ax.axvline(a["golden"], color="C3", ls=":", label="1/φ")
    ax.axvline(a["optimum_n"], color="C2", ls="-.", lw=0.8, label="optimum at n")
    ax.set_xlabel("real-data weight ω")
    ax.set_ylabel("‖ŵ_n − w*‖²_Σ")
    ax.legend()
    return fig
