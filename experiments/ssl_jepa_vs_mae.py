"""Deep linear JEPA vs MAE: which feature is learned first."""

from __future__ import annotations

import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import linear_jepa as m
from collapse_jax.report import Result
from collapse_jax.theory import linear_jepa as th

TITLE = (
    "JEPA vs MAE learning order in deep linear networks (Littwin et al. 2024, arXiv "
    "2407.03475, Fig. 2c/f setting): at depth 3 MAE learns the high-covariance "
    "low-influence feature first, JEPA the high-influence (large ρ) one"
)

FEATURES = dict(lam=(1.5, 1.0), rho=(0.5, 2.0), init_scale=0.3)


def run(quick: bool = True) -> Result:
    depth = 3
    horizon = {"jepa": 250.0, "mae": 12.0}
    agreements, arrays, divergences = {}, {}, []
    for objective in ("jepa", "mae"):
        cfg = m.Config(objective=objective, depth=depth, **FEATURES)
        runs = {}
        for lr in (0.01, 0.005):
            steps = int(round(horizon[objective] / lr))
            runs[lr] = cj.simulate(
                m, cfg.replace(lr=lr), steps=steps, every=steps // 100, seeds=2
            )
        fine = runs[0.005]
        pred = th.predict(fine.cfg, fine.steps)
        # 1.5 × the Richardson estimate of the Euler error of the lr/2 run; seeds only
        # draw the inner layers' random bases (SE ≈ 0).
        rich = float(np.max(np.abs(runs[0.01].mean("encoder") - fine.mean("encoder"))))
        agreements[objective.upper()] = cj.compare(
            fine, {"encoder": pred["encoder"]}, z=4.0, atol=1.5 * rich, at="trajectory"
        )
        final = np.asarray(th.final_encoder(cfg))
        arrays[f"{objective}/time"] = fine.steps * 0.005
        arrays[f"{objective}/gain"] = fine.mean("encoder") / final[None, :]
        arrays[f"{objective}/gain_se"] = fine.se("encoder") / final[None, :]
        arrays[f"{objective}/theory"] = np.asarray(pred["encoder"]) / final[None, :]
        arrays[f"{objective}/critical_time"] = np.asarray(th.critical_time(cfg))
        divergences += list(fine.divergences)
    return Result(
        config=dict(
            model="linear_jepa",
            depth=depth,
            **FEATURES,
            lr=[0.01, 0.005],
            horizon=horizon,
            seeds=2,
        ),
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            "Feature 1: cross-covariance λ = 1.5, regression coefficient ρ = 0.5 (input "
            "variance λ/ρ = 3, a noisy feature); feature 2: λ = 1, ρ = 2. Curves show the "
            "encoder gain on each feature divided by its final value (JEPA ρ^L, MAE "
            "ρ^{L/(L+1)}); dashed: per-feature ODEs derived in theory/linear_jepa.md; "
            "dotted verticals: their half-gain critical times. Both objectives are "
            "greedy in λ at leading order in the initial scale ε; the JEPA critical "
            "time has extra 1/ρ^n terms (n ≤ 2L−2) that delay low-ρ features, "
            "inverting the order at depth 3. Caveat: JEPA's final gain on feature 1 is "
            "small (ρ³ = 0.125), so it starts at (ε/ρ)³ ≈ 22 % of it and rises "
            "gradually; the order refers to the half-gain times."
        ),
    )


def plot(result: Result):
    a = result.arrays
    fig, axes = plotting.figure(ncols=2, width=4.4)
    for ax, objective in zip(axes[0], ("mae", "jepa"), strict=True):
        t = np.asarray(a[f"{objective}/time"])
        gain, se = (
            np.asarray(a[f"{objective}/gain"]),
            np.asarray(a[f"{objective}/gain_se"]),
        )
        theory = np.asarray(a[f"{objective}/theory"])
        tc = np.asarray(a[f"{objective}/critical_time"])
        labels = ("feature 1: λ=1.5, ρ=0.5", "feature 2: λ=1, ρ=2")
        for i in range(gain.shape[1]):
            color = plotting.simulation_band(
                ax, t, gain[:, i], se[:, i], label=labels[i]
            )
            ax.axvline(tc[i], color=color, ls=":", lw=1)
            plotting.theory_line(
                ax, t, theory[:, i], label="per-feature ODE" if i == 0 else None
            )
        ax.set(
            title=f"{objective.upper()}, depth 3",
            xlabel="time t = lr·step",
            ylabel="encoder gain / final gain",
        )
        ax.legend(fontsize=7)
    return fig
