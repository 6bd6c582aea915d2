"""Label smoothing and MaxSup on the cross-entropy unconstrained features model with
weight decay: the logit gap and the classifier and feature norms of the converged
solution against ε, with the closed-form minimiser (a simplex ETF whose norm equation
has √(nλ_Wλ_H) + ε/K in place of Zhu et al.'s √(nλ_Wλ_H); Guo et al. 2024, arXiv
2402.03979, for LS; Zhou et al. 2025, arXiv 2502.15798, for MaxSup, whose minimiser
coincides with LS's, theory/ufm.md). Above ε* = 1 − K√(nλ_Wλ_H) the minimiser is zero.
"""

from __future__ import annotations

import jax
import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.experiments._converged import converged_atol
from collapse_jax.models import ufm
from collapse_jax.report import Result
from collapse_jax.theory import ufm as theory

TITLE = (
    "UFM with label smoothing and MaxSup: logit gap z_y − z_k and norms of the "
    "converged solution vs smoothing ε (seeds' mean ± 2 SE, markers) against the "
    "closed-form ETF minimiser (dashed), zero above ε* = 1 − K√(nλ_Wλ_H). "
    "arXiv 2402.03979, 2502.15798."
)

# Float64 runs to ‖∇f‖ < 1e-11 (the agreement on grad_norm checks it); near the
# minimiser ‖θ − θ*‖ ≤ ‖∇f‖/μ with μ of order min(λ) = 3e-2, so 1e-8 bounds every
# limit. Grid points stay away from ε*, where the curvature along the margin vanishes.
GRAD_TOL = 1e-11
ATOL = 1e-8
PANELS = (
    ("logit_gap", "logit gap  z_y − z_k"),
    ("w_norm", "‖w_k‖"),
    ("h_norm", "‖h_k‖ (class mean)"),
)


def _limits(cfg, K):
    """Predicted limits of the plotted metrics for a grid Config (leaves ``[G]``):
    the theory formulas are elementwise in the float fields, so no vmap is needed."""
    w, h = theory.ce_norms(cfg)
    return {
        "logit_gap": theory.logit_gap(cfg),
        "w_norm": np.repeat(np.asarray(w)[:, None], K, axis=1),
        "h_norm": np.repeat(np.asarray(h)[:, None], K, axis=1),
        "loss": theory.min_loss(cfg),
        "grad_norm": np.zeros_like(np.asarray(w)),
    }


class _Recorded:
    """The UFM recording only the metrics this figure compares: the unused NC metrics
    are dropped from the compiled program (XLA removes what no output needs), which
    halves the compile time of each sweep. The full set is checked in the tests."""

    KEEP = ("loss", "grad_norm", "logit_gap", "w_norm", "h_norm")

    def __init__(self):
        self.Config, self.init, self.step = ufm.Config, ufm.init, ufm.step
        self.__name__ = "ufm"

    def observe(self, state, cfg):
        metrics = ufm.observe(state, cfg)
        return {name: metrics[name] for name in self.KEEP}


def run(quick: bool = True) -> Result:
    sizes = (
        dict(num_classes=4, dim=4, per_class=3)
        if quick
        else dict(num_classes=10, dim=12, per_class=10)
    )
    seeds, steps = (3, 4000) if quick else (16, 12_000)
    eps = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.85, 0.95]
    agreements, arrays, divergences = {}, {"smoothing": np.asarray(eps)}, []
    with jax.enable_x64(True):
        base = ufm.Config(
            **sizes, lambda_w=3e-2, lambda_h=6.25e-2, lr=1.0, dtype="float64"
        )
        if not quick:  # keep ε* = 0.7 at the larger size
            base = base.replace(lambda_h=6.25e-2 * 3 * 16 / (100 * 10))
        K = base.num_classes
        fine = np.linspace(0.0, 0.99, 199)
        fine_cfg, _ = cj.expand_grid(base.replace(loss="ls"), {"smoothing": fine})
        curve = _limits(fine_cfg, K)
        arrays["fine"] = fine
        for name, _ in PANELS:
            value = np.asarray(curve[name])
            arrays[f"{name}/theory"] = value if value.ndim == 1 else value[:, 0]
        grid = {"smoothing": eps}
        # MaxSup has the same minimiser as LS (theory.predict gives both the same
        # limits), so one prediction serves both sweeps.
        grid_cfg, _ = cj.expand_grid(base.replace(loss="ls"), grid)
        prediction = _limits(grid_cfg, K)
        model = _Recorded()
        for loss in ("ls", "maxsup"):
            cfg = base.replace(loss=loss)
            tr = cj.sweep(model, cfg, grid, seeds=seeds, steps=steps, every=steps)
            agreements[loss] = cj.compare(
                tr, prediction, atol=converged_atol(prediction, ATOL, GRAD_TOL)
            )
            divergences += list(tr.divergences)
            for name, _ in PANELS:
                mean, se = tr.mean(name)[:, -1], tr.se(name)[:, -1]
                if mean.ndim == 2:  # per-class norms: average over classes
                    mean, se = mean.mean(axis=1), se.mean(axis=1)
                arrays[f"{loss}/{name}/mean"], arrays[f"{loss}/{name}/se"] = mean, se
        threshold = float(theory.smoothing_threshold(base))
    config = {
        "model": "ufm",
        **cj.config_to_dict(base),
        "losses": ["ls", "maxsup"],
        "smoothing": eps,
        "seeds": seeds,
        "steps": steps,
        "atol": ATOL,
    }
    arrays["threshold"] = threshold
    return Result(
        config=config,
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            f"float64; final record after {steps} full-batch GD steps. The minimiser "
            f"vanishes at ε* = {threshold:.3f}; MaxSup and LS share the minimiser "
            "because MaxSup ≥ LS with equality on correctly classified samples."
        ),
    )


def plot(result: Result):
    a = result.arrays
    fig, axes = plotting.figure(ncols=len(PANELS), width=3.6)
    for ax, (name, title) in zip(axes[0], PANELS, strict=True):
        # Large open circles (LS) around small squares (MaxSup): the two coincide.
        for loss, color, marker, size in (
            ("ls", "C0", "o", 10),
            ("maxsup", "C1", "s", 4),
        ):
            plotting.simulation_band(
                ax,
                a["smoothing"],
                a[f"{loss}/{name}/mean"],
                a[f"{loss}/{name}/se"],
                label={"ls": "label smoothing (sim.)", "maxsup": "MaxSup (sim.)"}[loss],
                color=color,
                marker=marker,
                ls="none",
                markersize=size,
                markerfacecolor="none" if loss == "ls" else color,
            )
        plotting.theory_line(ax, a["fine"], a[f"{name}/theory"])
        ax.axvline(float(a["threshold"]), color="0.6", lw=0.8, ls=":", label="ε*")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("smoothing ε")
    axes[0, 0].legend(fontsize=8)
    return fig
