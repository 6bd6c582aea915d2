"""Full-covariance Gaussian refit under replace, accumulate and mix: covariance error,
log det and W2 to the original vs generation."""

from __future__ import annotations

import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import recursive_gaussian as m
from collapse_jax.report import Result
from collapse_jax.theory import recursive_gaussian as th

TITLE = (
    "Shumailov et al. 2023 (arXiv 2305.17493), multivariate Gaussian: a full mean and "
    "covariance refitted on its own samples; E‖Σ_n − I‖², E log det Σ_n and E W2² "
    "vs generation under replace, accumulate (Gerstgrasser et al. 2024) and mix "
    "(He et al. 2025); Wishart second-moment recursions, second-order log det / W2"
)

POLICIES = {
    "replace": dict(policy="replace"),
    "accumulate": dict(policy="accumulate"),
    "mix, w = 0.5": dict(policy="mix", real_fraction=0.5),
}
METRICS = ("cov_err_sq", "log_det", "w2_sq")
LABELS = {
    "cov_err_sq": "E ‖Σ_n − I‖²_F",
    "log_det": "E log det Σ_n",
    "w2_sq": "E W2²(fit, original)",
}


def run(quick: bool = True) -> Result:
    steps, every = 12, 2
    dim, samples = 3, 60
    seeds = 1000 if quick else 10_000
    agreements, arrays, divergences = {}, {}, []
    for label, kw in POLICIES.items():
        cfg = m.Config(
            dim=dim, samples=samples, covariance="full", max_generations=steps, **kw
        )
        tr = cj.simulate(m, cfg, seeds=seeds, steps=steps, every=every)
        pred = th.predict(cfg, tr.steps)
        err = th.approximation_error(cfg, tr.steps)
        # atol: the stated remainder of the second-order / leading-order entries
        # (largest over the records) plus 1e-5 for float32 rounding at generation 0.
        atol = {k: float(np.max(err[k])) + 1e-5 for k in METRICS}
        agreements[label] = cj.compare(
            tr, {k: pred[k] for k in METRICS}, z=4.0, atol=atol
        )
        divergences += list(tr.divergences)
        arrays["generation"] = tr.steps
        for name in METRICS:
            arrays[f"{label}/{name}/mean"] = tr.mean(name)
            arrays[f"{label}/{name}/se"] = tr.se(name)
            arrays[f"{label}/{name}/theory"] = np.asarray(pred[name])
            arrays[f"{label}/{name}/allowance"] = np.asarray(err[name])
    return Result(
        config=dict(
            dim=dim,
            samples=samples,
            covariance="full",
            generations=steps,
            every=every,
            seeds=seeds,
            policies=POLICIES,
        ),
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            f"d = {dim}, M = {samples}, unbiased full fits. E‖Σ − I‖² is exact "
            "(Wishart moments) under replace and mix and leading order in 1/M under "
            "accumulate; log det (accumulate, mix) and W2² (all three) are the "
            "second-order expansions around Σ = I, drawn with a grey band of their "
            "stated remainder; replace log det is exact. Replacing lets every error "
            "grow with n; accumulating bounds them (the π²/6 sum); mixing with fresh "
            "real data holds them at a fixed point. Tolerance 4 SE + remainder."
        ),
    )


def plot(result: Result):
    fig, axes = plotting.figure(nrows=1, ncols=3, width=3.8, height=3.3)
    a = result.arrays
    x = a["generation"]
    for ax, name in zip(axes[0], METRICS, strict=True):
        for label in POLICIES:
            color = plotting.simulation_band(
                ax,
                x,
                a[f"{label}/{name}/mean"],
                a[f"{label}/{name}/se"],
                label=label,
            )
            theory = a[f"{label}/{name}/theory"]
            band = a[f"{label}/{name}/allowance"]
            ax.fill_between(x, theory - band, theory + band, color="0.6", alpha=0.2)
            plotting.theory_line(ax, x, theory, color=color, label=None)
        ax.set_xlabel("generation n")
        ax.set_ylabel(LABELS[name])
        ax.set_title(LABELS[name], fontsize=10)
    axes[0, 0].plot([], [], "k--", label="theory")
    axes[0, 0].fill_between(
        [], [], [], color="0.6", alpha=0.2, label="stated remainder"
    )
    axes[0, 0].legend(fontsize=7)
    return fig
