"""Memorisation model over n generations of narrowed AI data, and clean data mixed in
at every generation."""

from __future__ import annotations

import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import zipf_tails as m
from collapse_jax.report import Result
from collapse_jax.theory import zipf_tails as th

TITLE = (
    "Dohmatob et al. 2024, A Tale of Tails (arXiv 2402.07043): memoriser test error "
    "vs training tokens T after n generations of tail narrowing (exponent "
    "(β−1)/β_n, β_n = β(β'/β)^n) and with a clean share π mixed in every generation "
    "(the clean exponent 1 − 1/β returns)"
)

GENERATIONS = (0, 1, 2, 3)
FRACTIONS = (0.0, 0.02, 0.1)


def _traj(cfg, steps, every, seeds, grid=None):
    if grid:
        return cj.sweep(m, cfg, grid, seeds=seeds, steps=steps, every=every)
    return cj.simulate(m, cfg, seeds=seeds, steps=steps, every=every)


def run(quick: bool = True) -> Result:
    seeds = 100 if quick else 1000
    vocab, steps, every = (5000, 200, 10) if quick else (40_000, 2000, 20)
    beta, narrow, batch = 2.0, 2.5, 50
    base = m.Config(
        vocab=vocab, batch=batch, beta=beta, narrow_beta=narrow, source="narrow"
    )
    # atol 1e-5: float32 rounding of Σ_i p_i over the vocabulary at T = 0 (SE = 0).
    tol = dict(z=4.0, atol=1e-5)
    agreements, arrays = {}, {}
    divergences = []
    for n in GENERATIONS:
        cfg = base.replace(generations=n)
        tr = _traj(cfg, steps, every, seeds)
        pred = np.asarray(th.test_error(cfg, tr.steps))
        agreements[f"n = {n}"] = cj.compare(tr, {"test_error": pred}, **tol)
        divergences += list(tr.divergences)
        T = tr.steps * batch
        arrays["T"] = T
        arrays[f"n{n}/mean"] = tr.mean("test_error")
        arrays[f"n{n}/se"] = tr.se("test_error")
        arrays[f"n{n}/theory"] = pred
        arrays[f"n{n}/law"] = np.asarray(th.narrowed_scaling(cfg, np.maximum(T, 1)))
        arrays[f"n{n}/exponent"] = np.asarray(th.narrowed_exponent(cfg))
    mixed = base.replace(generations=3)
    tr = _traj(mixed, steps, every, seeds, {"clean_fraction": np.array(FRACTIONS)})
    pred = np.stack(
        [th.test_error(mixed.replace(clean_fraction=f), tr.steps) for f in FRACTIONS]
    )
    agreements["n = 3, clean share swept"] = cj.compare(tr, {"test_error": pred}, **tol)
    divergences += list(tr.divergences)
    T = tr.steps * batch
    arrays["pi/mean"] = tr.mean("test_error")
    arrays["pi/se"] = tr.se("test_error")
    arrays["pi/theory"] = pred
    arrays["pi/law"] = np.stack(
        [
            np.asarray(
                th.test_error_scaling(mixed.replace(clean_fraction=f), np.maximum(T, 1))
            )
            for f in FRACTIONS[1:]
        ]
    )
    return Result(
        config=dict(
            vocab=vocab,
            batch=batch,
            beta=beta,
            narrow_beta=narrow,
            steps=steps,
            every=every,
            seeds=seeds,
            generations=list(GENERATIONS),
            clean_fractions=list(FRACTIONS),
        ),
        agreements=agreements,
        arrays=arrays,
        divergences=divergences,
        notes=(
            f"Zipf β = {beta:g} over N = {vocab} tokens; each generation sharpens the "
            f"previous law by g → g^(β'/β), β' = {narrow:g}, so n rounds give "
            "Zipf(β_n). Dashed: exact E_test = Σ p_i (1 − q_i)^T with q from the "
            "closed form. Dotted, left: C_n T^(−c_n), c_n = (β − 1)/β_n (N = ∞ "
            "asymptote, our derivation); right: the clean law at πT, which the "
            "mixed runs approach as the clean share teaches the tail. Repeated "
            "top-k cuts of an exact law are idempotent (tests), so only narrowing "
            "compounds across generations here. Tolerance 4 SE."
        ),
    )


def plot(result: Result):
    a = result.arrays
    fig, axes = plotting.figure(nrows=1, ncols=2, width=4.8, height=3.6)
    T = a["T"][1:]
    ax = axes[0, 0]
    for n in GENERATIONS:
        c_n = float(a[f"n{n}/exponent"])
        color = plotting.simulation_band(
            ax,
            T,
            a[f"n{n}/mean"][1:],
            a[f"n{n}/se"][1:],
            label=f"n = {n} (c_n = {c_n:.3f})",
        )
        plotting.theory_line(ax, T, a[f"n{n}/theory"][1:], color=color, label=None)
        ax.plot(T, a[f"n{n}/law"][1:], ":", color=color, lw=1.0)
    ax.plot([], [], ":", color="gray", label=r"$C_n T^{-c_n}$")
    ax.set_title("n generations of narrowing, no clean data", fontsize=10)
    ax = axes[0, 1]
    for g, f in enumerate(FRACTIONS):
        color = plotting.simulation_band(
            ax, T, a["pi/mean"][g, 1:], a["pi/se"][g, 1:], label=f"π = {f:g}"
        )
        plotting.theory_line(ax, T, a["pi/theory"][g, 1:], color=color, label=None)
        if g > 0:
            ax.plot(T, a["pi/law"][g - 1, 1:], ":", color=color, lw=1.0)
    ax.plot([], [], ":", color="gray", label=r"$C_\beta (\pi T)^{-(1-1/\beta)}$")
    ax.set_title("n = 3 with a clean share π each generation", fontsize=10)
    for ax in axes[0]:
        ax.plot([], [], "--", color="gray", label="exact E_test")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training tokens T")
        ax.set_ylabel("test error")
        ax.legend(fontsize=7)
    return fig
