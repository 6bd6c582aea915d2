"""Stage-like learning in deep linear networks: mode strengths vs time for depths 2–4.

Saxe, McClelland & Ganguli 2014 (arXiv 1312.6120), Fig. 2-style curves: from a small
balanced start each mode of the teacher (singular values 3, 2, 1) is learned along a
sigmoid, in order of singular value; deeper networks have sharper, later transitions.
Theory: the closed-form two-layer sigmoid and the RK4-integrated depth-L mode ODE; the
last panel is a two-layer network from a random Gaussian start (seed mean ± SE), against
the χ²-averaged sigmoid. GD (lr η) vs gradient flow differs by O(η); the allowance is
1.5× the derived first-order term (theory/deep_linear.md).
"""

from __future__ import annotations

import numpy as np

from collapse_jax import compare, simulate
from collapse_jax.models import deep_linear as model
from collapse_jax.plotting import figure, simulation_band, theory_line
from collapse_jax.report import Result
from collapse_jax.theory import deep_linear as theory

TITLE = (
    "Saxe et al. 2014 (arXiv 1312.6120), Fig. 2-style: stage-like learning of singular "
    "modes in deep linear networks, depths 2–4 and a random two-layer start"
)

_SV = (3.0, 2.0, 1.0)


def _configs(quick: bool):
    lr = 0.01 if quick else 0.004
    runs = []
    for depth, scale, horizon in ((2, 0.05, 6.0), (3, 0.3, 8.0), (4, 0.5, 8.0)):
        cfg = model.Config(
            depth=depth,
            in_dim=3,
            hidden=6,
            out_dim=3,
            singular_values=_SV,
            init_scale=scale,
            lr=lr,
        )
        runs.append((f"balanced, L={depth}", cfg, 60 * round(horizon / lr / 60), 2))
    cfg = model.Config(
        depth=2,
        in_dim=4,
        hidden=32,
        out_dim=4,
        singular_values=_SV,
        init="random",
        init_scale=0.01,
        lr=lr,
    )
    runs.append(("random, L=2", cfg, 60 * round(6.0 / lr / 60), 64 if quick else 400))
    return runs


def run(quick: bool = True) -> Result:
    agreements, arrays, divergences, config = {}, {}, [], {}
    for label, cfg, steps, seeds in _configs(quick):
        every = steps // 60
        traj = simulate(model, cfg, seeds=seeds, steps=steps, every=every)
        pred = np.asarray(theory.predict(cfg, traj.steps)["modes"])
        e1 = np.asarray(theory.gd_first_order_error(cfg, traj.steps))
        bound = 1.5 * float(np.max(np.abs(e1)))
        agreements[label] = compare(traj, {"modes": pred}, z=4, atol=bound)
        key = label.replace(", ", "_").replace("=", "")
        arrays[f"{key}/time"] = cfg.lr * traj.steps
        arrays[f"{key}/mean"] = traj.mean("modes")
        arrays[f"{key}/se"] = traj.se("modes")
        arrays[f"{key}/theory"] = pred
        divergences += list(traj.divergences)
        config[label] = {
            "config": traj.config,
            "steps": steps,
            "seeds": seeds,
            "gd_allowance": bound,
        }
    return Result(
        config=config,
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            "Balanced starts are deterministic up to hidden rotations, so their SE is "
            "~0 and the tolerance is the GD-vs-flow allowance. The random-start "
            "prediction matches the linear growth phase and neglects mode coupling "
            "beyond removing the faster modes' directions (error O(1/h))."
        ),
    )


def plot(result: Result):
    labels = list(result.agreements)
    fig, axes = figure(ncols=len(labels), width=3.6)
    for ax, label in zip(axes[0], labels, strict=True):
        key = label.replace(", ", "_").replace("=", "")
        t = result.arrays[f"{key}/time"]
        mean, se = result.arrays[f"{key}/mean"], result.arrays[f"{key}/se"]
        pred = result.arrays[f"{key}/theory"]
        for a, s in enumerate(_SV):
            simulation_band(ax, t, mean[:, a], se[:, a], label=f"s={s:g}")
            theory_line(
                ax, t, pred[:, a], label="theory" if a == 0 else None, color="k"
            )
        ax.set_title(label)
        ax.set_xlabel("time  t = lr · step")
    axes[0, 0].set_ylabel("mode strength u")
    axes[0, 0].legend(fontsize=8)
    return fig
