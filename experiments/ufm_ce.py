"""Cross-entropy unconstrained features model with weight decay: convergence to the
simplex ETF with the predicted norms and logit margin (Zhu et al. 2021, arXiv
2105.02375, Thm 3.1 and Fig. 2).
"""

from __future__ import annotations

import jax
import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import ufm
from collapse_jax.report import Result
from collapse_jax.theory import ufm as theory

TITLE = (
    "UFM with cross-entropy and weight decay: ETF distances, norms and loss vs "
    "step (seeds' mean ± 2 SE) against the Zhu et al. 2021 minimiser (dashed): "
    "simplex ETF, ‖w‖/‖h‖ = √(nλ_H/λ_W), margin from the norm equation. "
    "arXiv 2105.02375, Thm 3.1."
)

# Float64 runs to ‖∇f‖ < 1e-11; as in ufm_mse, 1e-8 bounds the distance to the limit.
ATOL = 1e-8
PANELS = (  # metric, title, y label, log axis
    ("nc2_h", "NC2: class means vs ETF", "‖MMᵀ/‖MMᵀ‖ − E/‖E‖‖ (E: ETF Gram)", True),
    ("nc2_w", "NC2: classifier vs ETF", "‖WWᵀ/‖WWᵀ‖ − E/‖E‖‖", True),
    ("w_norm", "classifier norms", "‖w_k‖ (mean over k)", False),
    ("h_norm", "feature norms", "‖h_k‖ (mean over k)", False),
    ("loss", "regularised loss", "CE + weight decay", False),
)


def run(quick: bool = True) -> Result:
    sizes = (
        dict(num_classes=4, dim=6, per_class=5)
        if quick
        else dict(num_classes=10, dim=16, per_class=20)
    )
    seeds, steps, every = (8, 15_000, 100) if quick else (64, 60_000, 300)
    with jax.enable_x64(True):
        cfg = ufm.Config(
            **sizes, loss="ce", lambda_w=1e-2, lambda_h=2e-2, lr=0.5, dtype="float64"
        )
        tr = cj.simulate(ufm, cfg, seeds=seeds, steps=steps, every=every)
        prediction = theory.predict(cfg)
        agreement = cj.compare(tr, prediction, atol=ATOL)
    arrays = {"steps": tr.steps, "margin": theory.ce_logit_margin(cfg)}
    for name, *_ in PANELS:
        mean, se = tr.mean(name), tr.se(name)
        if mean.ndim == 2:
            mean, se = mean.mean(axis=1), se.mean(axis=1)
        arrays[f"{name}/mean"], arrays[f"{name}/se"] = mean, se
        arrays[f"{name}/theory"] = float(np.mean(np.asarray(prediction[name])))
    config = {
        **cj.config_to_dict(cfg),
        "seeds": seeds,
        "steps": steps,
        "every": every,
        "atol": ATOL,
    }
    return Result(
        config=config,
        agreements={"ce": agreement},
        arrays=arrays,
        divergences=list(tr.divergences),
        notes=f"Predicted logit margin t = {float(arrays['margin']):.4f}.",
    )


def plot(result: Result):
    a = result.arrays
    fig, axes = plotting.figure(ncols=len(PANELS), width=3.4)
    for ax, (name, title, ylabel, log) in zip(axes[0], PANELS, strict=True):
        steps = a["steps"]
        if log:  # before the band, so it is drawn as a log-scale interval
            ax.set_yscale("log")
        plotting.simulation_band(
            ax, steps, a[f"{name}/mean"], a[f"{name}/se"], label="simulation"
        )
        limit = float(a[f"{name}/theory"])
        if log and limit < ATOL:  # an ETF distance of 0 is off a log axis
            plotting.theory_zero(ax, label="theory = 0, off the axis")
        else:
            plotting.theory_line(ax, steps, np.full(len(steps), limit))
        # steps start at 0 and span decades: linear up to one record, log beyond;
        # the left limit 0 keeps autoscaling from adding a negative decade
        ax.set_xscale("symlog", linthresh=max(float(steps[1]), 1.0))
        ax.set_xlim(0, float(steps[-1]))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("GD step")
        ax.set_ylabel(ylabel)
        plotting.legend(ax)
    return fig
