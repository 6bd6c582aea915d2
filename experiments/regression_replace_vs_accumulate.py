"""Replace vs accumulate: OLS generator error vs generation (fixed design)."""

from __future__ import annotations

import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import recursive_regression as m
from collapse_jax.report import Result
from collapse_jax.theory import recursive_regression as th

TITLE = (
    "Gerstgrasser et al. 2024 (arXiv 2404.01413), Fig. 1 (linear model): test error "
    "grows linearly when data are replaced, stays below π²/6 · σ0²d/(T0−d−1) when "
    "they accumulate"
)


def run(quick: bool = True) -> Result:
    seeds, steps = (300, 30) if quick else (2000, 100)
    base = dict(dim=10, generator_samples=20, samples=40, fixed_design=True)
    out, agreements, arrays = {}, {}, {}
    for policy in ("replace", "accumulate"):
        cfg = m.Config(policy=policy, **base)
        tr = cj.simulate(m, cfg, seeds=seeds, steps=steps)
        pred = th.predict(cfg, tr.steps)
        agreements[policy] = cj.compare(tr, pred, z=4.0)
        arrays[f"{policy}_mean"] = tr.mean("test_error")
        arrays[f"{policy}_se"] = tr.se("test_error")
        arrays[f"{policy}_theory"] = np.asarray(pred["test_error"])
        out[policy] = tr
    arrays["n"] = out["replace"].steps
    arrays["bound"] = float(th.accumulate_limit(m.Config(**base)))
    return Result(
        config={**base, "seeds": seeds, "generations": steps},
        agreements=agreements,
        arrays=arrays,
        divergences=[d for tr in out.values() for d in tr.divergences],
        notes=(
            "OLS generators refitted on T0 = 20 samples (d = 10, σ0 = 1) of one fixed "
            "design; metric ‖ŵ_n − w*‖²_Σ. Theory: n·c (replace) and c·Σ_{i≤n} 1/i² "
            "(accumulate), c = σ0² d/(T0 − d − 1); dotted: the π²/6·c bound."
        ),
    )


def plot(result: Result):
    fig, axes = plotting.figure()
    ax = axes[0, 0]
    a = result.arrays
    for policy in ("replace", "accumulate"):
        color = plotting.simulation_band(
            ax, a["n"], a[f"{policy}_mean"], a[f"{policy}_se"], label=policy
        )
        plotting.theory_line(ax, a["n"], a[f"{policy}_theory"], color=color, label=None)
    ax.axhline(a["bound"], color="gray", ls=":", label="π²/6 · c")
    ax.set_xlabel("generation n")
    ax.set_ylabel("‖ŵ_n − w*‖²_Σ")
    ax.legend(title="dashed: theory")
    return fig
