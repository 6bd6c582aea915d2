"""Gaussian refit loop: variance, mean drift, W2 and log det vs generation."""

from __future__ import annotations

import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import recursive_gaussian as m
from collapse_jax.report import Result
from collapse_jax.theory import recursive_gaussian as th

TITLE = (
    "Shumailov et al. 2023 (arXiv 2305.17493), Sec. 3.2: a Gaussian refitted on its own "
    "samples; E tr Σ, E‖μ‖², E W2² and E log det Σ vs generation, unbiased vs MLE, "
    "replace vs accumulate (exact expectations or second-order expansions, dashed)"
)

VARIANTS = {
    "replace, unbiased": dict(policy="replace", estimator="unbiased"),
    "replace, MLE": dict(policy="replace", estimator="mle"),
    "accumulate, unbiased": dict(policy="accumulate", estimator="unbiased"),
}
METRICS = ("variance", "mean_sq", "w2_sq", "log_det")
LABELS = {
    "variance": "E tr Σ_n",
    "mean_sq": "E ‖μ_n − μ_0‖²",
    "w2_sq": "E W2²(fit, original)",
    "log_det": "E log det Σ_n",
}


def run(quick: bool = True) -> Result:
    # M = 100 keeps 2n/(M − 1) <= 1 over 50 generations, where seed means of the
    # log-normal-like variance are trustworthy (see theory/recursive_gaussian.md).
    steps, every = 50, 5
    seeds = 1000 if quick else 10_000
    agreements, arrays, divergences = {}, {}, []
    configs = {}
    for label, kw in VARIANTS.items():
        cfg = m.Config(
            dim=2, samples=100, covariance="diagonal", max_generations=steps, **kw
        )
        configs[label] = kw
        tr = cj.simulate(m, cfg, seeds=seeds, steps=steps, every=every)
        pred = {k: v for k, v in th.predict(cfg, tr.steps).items() if k != "mean"}
        # atol: 1e-5 for float32 rounding of the deterministic generation-0 values,
        # plus the stated remainder of second-order entries (0 for exact ones).
        err = th.approximation_error(cfg, tr.steps)
        atol = {k: float(np.max(err[k])) + 1e-5 for k in pred}
        agreements[label] = cj.compare(tr, pred, z=4.0, atol=atol)
        divergences += list(tr.divergences)
        arrays["generation"] = tr.steps
        for name in METRICS:
            arrays[f"{label}/{name}/mean"] = tr.mean(name)
            arrays[f"{label}/{name}/se"] = tr.se(name)
            arrays[f"{label}/{name}/theory"] = (
                np.asarray(pred[name])
                if name in pred
                else np.full(len(tr.steps), np.nan)
            )
    return Result(
        config=dict(
            dim=2,
            samples=100,
            covariance="diagonal",
            generations=steps,
            every=every,
            seeds=seeds,
            variants=configs,
        ),
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            "Unbiased refits keep E tr Σ = d exactly while E log det Σ drifts down "
            "linearly (the variance collapses almost surely); MLE shrinks E tr Σ by "
            "(M−1)/M per generation. Replacing data makes the mean a random walk "
            "(E‖μ‖² = n d/M); accumulating keeps it below (d/M)·π²/6-type bounds. "
            "E W2² and E log det under accumulate have no closed form: their dashed "
            "curves are the second-order expansions (theory.approximation_error "
            "sizes the remainder, added to the tolerance). Tolerance: 4 SE."
        ),
    )


def plot(result: Result):
    fig, axes = plotting.figure(ncols=4, width=3.6)
    x = result.arrays["generation"]
    for ax, name in zip(axes[0], METRICS, strict=True):
        for label in VARIANTS:
            color = plotting.simulation_band(
                ax,
                x,
                result.arrays[f"{label}/{name}/mean"],
                result.arrays[f"{label}/{name}/se"],
                label=label,
            )
            theory = result.arrays[f"{label}/{name}/theory"]
            if np.any(np.isfinite(theory)):
                plotting.theory_line(ax, x, theory, color=color, label=None)
        ax.set_xlabel("generation n")
        ax.set_title(LABELS[name], fontsize=10)
    axes[0, 0].plot([], [], "k--", label="exact theory")
    axes[0, 0].legend(fontsize=7)
    return fig
