"""Neural collapse at every layer of a deep linear UFM, for depths 1–3.

Dang et al. 2023 (arXiv 2301.00437), balanced MSE with a last-layer bias: at the global
minimiser the features entering every linear layer collapse to their class means
(NC1 = 0), the centred class means form a simplex ETF, and their norms follow from the
per-singular-value scalar problem (theory/deep_linear_ufm.md). Left: NC1 per layer
during training (depth 3). Middle: class-mean norm per layer at the end of training
against the closed form, one curve per depth. Right: distance of the class means to a
simplex ETF per layer.
"""

from __future__ import annotations

import numpy as np

from collapse_jax import compare, plotting, simulate
from collapse_jax.models import deep_linear_ufm as model
from collapse_jax.report import Result
from collapse_jax.theory import deep_linear_ufm as theory

TITLE = (
    "Dang et al. 2023 (arXiv 2301.00437): NC1, class-mean norms and ETF geometry at "
    "every layer of the deep linear UFM (MSE, bias, balanced), depths 1–3"
)

_DEPTHS = (1, 2, 3)


def run(quick: bool = True) -> Result:
    seeds = 4 if quick else 16
    steps, every = 5000, 250
    agreements, arrays, divergences, config = {}, {}, [], {}
    for depth in _DEPTHS:
        # init_scale 1: from a small start a mode can stall at the x = 0 local minimum
        # that every deep (≥ 3 factors) scalar problem has (theory/deep_linear_ufm.md)
        cfg = model.Config(
            num_classes=4,
            dim=8,
            depth=depth,
            per_class=5,
            bias=True,
            lambda_w=1e-2,
            lambda_h=1e-2,
            lr=0.3,
            init_scale=1.0,
        )
        traj = simulate(model, cfg, seeds=seeds, steps=steps, every=every)
        pred = theory.predict(cfg)
        keys = ("mean_norm", "w_norm", "sv", "nc1")
        # deterministic limit (z = 0): float32 runs carry ~1e-6 relative rounding, so
        # atol = rtol = 1e-5; a seed stalled at a zero mode would fail this
        agreements[f"L={depth}"] = compare(
            traj, {k: pred[k] for k in keys}, z=0, atol=1e-5, rtol=1e-5, at="final"
        )
        arrays[f"L{depth}/steps"] = traj.steps
        arrays[f"L{depth}/nc1_mean"] = traj.mean("nc1")
        arrays[f"L{depth}/nc1_se"] = traj.se("nc1")
        arrays[f"L{depth}/norm_mean"] = traj.mean("mean_norm")[-1].mean(axis=-1)
        arrays[f"L{depth}/norm_se"] = traj.se("mean_norm")[-1].mean(axis=-1)
        arrays[f"L{depth}/norm_theory"] = np.asarray(pred["mean_norm"]).mean(axis=-1)
        arrays[f"L{depth}/etf_mean"] = traj.mean("nc2_etf")[-1]
        arrays[f"L{depth}/etf_se"] = traj.se("nc2_etf")[-1]
        divergences += list(traj.divergences)
        config[f"L={depth}"] = {"config": traj.config, "steps": steps, "seeds": seeds}
    return Result(
        config=config,
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            "Layer l is the input of W_{l+1} (layer 0 = the free features H). With a "
            "bias the class means are centred at the minimiser, so the simplex-ETF "
            "distance is predicted to be 0 at every layer."
        ),
    )


def plot(result: Result):
    fig, axes = plotting.figure(ncols=3, width=3.9)
    ax = axes[0, 0]
    ax.set_yscale("log")  # before the bands, so they are drawn as log-scale intervals
    steps = result.arrays["L3/steps"]
    mean, se = result.arrays["L3/nc1_mean"], result.arrays["L3/nc1_se"]
    for l in range(mean.shape[1]):
        plotting.simulation_band(ax, steps, mean[:, l], se[:, l], label=f"layer {l}")
    plotting.theory_zero(ax, label="theory = 0, off the axis")
    ax.set_xlabel("GD step")
    ax.set_ylabel("NC1 (depth 3)")
    ax.set_title("NC1 → 0 at every layer")
    plotting.legend(ax)
    ax = axes[0, 1]
    for depth in _DEPTHS:
        m, s = result.arrays[f"L{depth}/norm_mean"], result.arrays[f"L{depth}/norm_se"]
        layers = np.arange(len(m))
        plotting.simulation_band(ax, layers, m, s, marker="o", label=f"L={depth}")
        # a marker too: depth 1 has a single layer, which a line alone does not show
        plotting.theory_line(
            ax,
            layers,
            result.arrays[f"L{depth}/norm_theory"],
            marker="x",
            label="theory" if depth == _DEPTHS[-1] else None,
        )
    ax.set_xlabel("layer l (features entering W_{l+1})")
    ax.set_ylabel("class-mean norm")
    ax.set_title("norms vs closed form")
    plotting.legend(ax)
    ax = axes[0, 2]
    for depth in _DEPTHS:
        m, s = result.arrays[f"L{depth}/etf_mean"], result.arrays[f"L{depth}/etf_se"]
        layers = np.arange(len(m))
        plotting.simulation_band(ax, layers, m, s, marker="o", label=f"L={depth}")
    ax.axhline(0.0, color="k", ls="--", lw=1.2, label="theory (ETF)")
    ax.set_xlabel("layer l")
    ax.set_ylabel("distance to simplex ETF")
    ax.set_title("ETF geometry per layer")
    plotting.legend(ax)
    for ax in axes[0, 1:]:
        plotting.integer_ticks(ax, "x")
    return fig
