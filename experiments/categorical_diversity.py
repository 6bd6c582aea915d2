"""Categorical self-training: diversity and surviving symbols vs generation."""

from __future__ import annotations

import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import categorical_self_training as m
from collapse_jax.report import Result
from collapse_jax.theory import categorical_self_training as th

TITLE = (
    "Categorical self-training (Wright–Fisher; the discrete model-collapse loop of "
    "Seddik et al. 2024, arXiv 2404.05090): E[1 − Σp²] = (1 − 1/n)^t (1 − Σp_0²) and "
    "the expected number of surviving symbols vs generation t/n, for several n"
)

SAMPLES = (10, 30, 100)


def run(quick: bool = True) -> Result:
    seeds = 1000 if quick else 10_000
    # Each n runs 4n generations (rescaled time t/n in [0, 4]): the chain is still
    # unabsorbed in a fair share of seeds, so seed means and SEs are informative; far
    # past absorption every seed sits at p = δ_i and the SE is 0 while the exact mean
    # still differs by the tiny unabsorbed probability.
    horizon = 4 if quick else 6
    K = 20
    agreements, arrays, divergences = {}, {}, []
    for n in SAMPLES:
        cfg = m.Config(num_symbols=K, samples=n, initial="zipf", zipf_exponent=1.0)
        tr = cj.simulate(
            m, cfg, seeds=seeds, steps=horizon * n, every=horizon * n // 20
        )
        pred = th.predict(cfg, tr.steps)
        pred = {k: pred[k] for k in ("diversity", "support")}
        # atol 1e-6: float32 rounding of p_0 at t = 0, where every seed agrees (SE = 0).
        agreements[f"n = {n}"] = cj.compare(tr, pred, z=4.0, atol=1e-6)
        divergences += list(tr.divergences)
        arrays[f"{n}/generation"] = tr.steps
        for name in ("diversity", "support"):
            arrays[f"{n}/{name}/mean"] = tr.mean(name)
            arrays[f"{n}/{name}/se"] = tr.se(name)
            arrays[f"{n}/{name}/theory"] = np.asarray(pred[name])
    return Result(
        config=dict(
            num_symbols=K,
            initial="zipf",
            zipf_exponent=1.0,
            samples=list(SAMPLES),
            generations_over_n=horizon,
            seeds=seeds,
        ),
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            "Each generation refits p by maximum likelihood (counts / n) on n samples "
            "of itself. Diversity (the probability that two samples differ) decays "
            "geometrically with rate 1/n; symbols go extinct and never return. "
            "Dashed: exact expectations (diversity in closed form, survival by "
            "propagating each symbol's binomial count chain). Tolerance 4 SE."
        ),
    )


def plot(result: Result):
    a = result.arrays
    fig, axes = plotting.figure(ncols=2, width=4.6, height=3.4)
    for ax, name, label in zip(
        axes[0],
        ("diversity", "support"),
        ("diversity E[1 − Σ p²]", "surviving symbols E #{p_i > 0}"),
        strict=True,
    ):
        for n in SAMPLES:
            x = np.asarray(a[f"{n}/generation"]) / n
            c = plotting.simulation_band(
                ax, x, a[f"{n}/{name}/mean"], a[f"{n}/{name}/se"], label=f"n = {n}"
            )
            plotting.theory_line(ax, x, a[f"{n}/{name}/theory"], color=c, label=None)
        ax.set_xlabel("generation t / n")
        ax.set_title(label, fontsize=10)
    axes[0, 1].set_yscale("log")
    axes[0, 0].plot([], [], "k--", label="exact theory")
    axes[0, 0].legend(fontsize=8)
    return fig
