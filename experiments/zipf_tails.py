"""Memorisation model on Zipf data: test error vs T for several tail cuts k, and the
recovery when clean data are mixed in."""

from __future__ import annotations

import numpy as np

import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.models import zipf_tails as m
from collapse_jax.report import Result
from collapse_jax.theory import zipf_tails as th

TITLE = (
    "Dohmatob et al. 2024, A Tale of Tails (arXiv 2402.07043), Figs. of Secs. 2 and 4: "
    "memoriser test error vs training tokens T for tail cuts at rank k (floors "
    "Σ_{i>k} p_i) and with a clean-data fraction π (recovery of the T^{-(1-1/β)} law)"
)

NO_CUT = 1e9


def _predict_grid(cfg, field, values, steps):
    return np.stack(
        [
            np.asarray(th.test_error(cfg.replace(**{field: float(v)}), steps))
            for v in values
        ]
    )


def run(quick: bool = True) -> Result:
    seeds = 200 if quick else 2000
    vocab, steps, every = (10_000, 400, 8) if quick else (40_000, 2000, 20)
    beta, batch, mix_batch = 2.0, 50, 250
    cfg = m.Config(vocab=vocab, batch=batch, beta=beta)
    # Every floor Σ_{i>k} p_i lies inside the plotted error range (a cut whose
    # floor sits below the smallest error drawn would hide under the no-cut curve).
    cuts = np.array([NO_CUT, 100.0, 30.0, 10.0])
    fractions = np.array([0.0, 0.05, 0.2])
    # atol 1e-5: float32 rounding of Σ_i p_i over the vocabulary at T = 0 (SE = 0).
    tol = dict(z=4.0, atol=1e-5)

    tr_k = cj.sweep(m, cfg, {"cut_rank": cuts}, seeds=seeds, steps=steps, every=every)
    pred_k = _predict_grid(cfg, "cut_rank", cuts, tr_k.steps)
    # Recovery is asymptotic in π·T ≫ k^β ζ(β): larger batches reach further in T.
    mixed = m.Config(vocab=vocab, batch=mix_batch, beta=beta, cut_rank=30.0)
    tr_pi = cj.sweep(
        m, mixed, {"clean_fraction": fractions}, seeds=seeds, steps=steps, every=every
    )
    pred_pi = _predict_grid(mixed, "clean_fraction", fractions, tr_pi.steps)

    T = tr_k.steps * batch
    floors = np.array(
        [float(th.test_error_floor(cfg.replace(cut_rank=float(k)))) for k in cuts]
    )
    law = np.asarray(th.test_error_scaling(cfg, np.maximum(T, 1)))
    T_pi = tr_pi.steps * mix_batch
    law_pi = np.stack(
        [
            np.asarray(
                th.test_error_scaling(
                    mixed.replace(clean_fraction=float(f)), np.maximum(T_pi, 1)
                )
            )
            for f in fractions[1:]
        ]
    )
    return Result(
        config=dict(
            vocab=vocab,
            batch=batch,
            beta=beta,
            mix_batch=mix_batch,
            steps=steps,
            every=every,
            seeds=seeds,
            cut_ranks=cuts.tolist(),
            clean_fractions=fractions.tolist(),
            mixing_cut_rank=30.0,
        ),
        agreements={
            "cut rank sweep": cj.compare(tr_k, {"test_error": pred_k}, **tol),
            "clean fraction sweep": cj.compare(tr_pi, {"test_error": pred_pi}, **tol),
        },
        arrays={
            "T": T,
            "T_pi": T_pi,
            "cuts": cuts,
            "fractions": fractions,
            "k_mean": tr_k.mean("test_error"),
            "k_se": tr_k.se("test_error"),
            "k_theory": pred_k,
            "floors": floors,
            "law": law,
            "pi_mean": tr_pi.mean("test_error"),
            "pi_se": tr_pi.se("test_error"),
            "pi_theory": pred_pi,
            "law_pi": law_pi,
        },
        divergences=list(tr_k.divergences) + list(tr_pi.divergences),
        notes=(
            f"Zipf β = {beta:g} over N = {vocab} tokens; the memoriser errs on unseen "
            "tokens. Dashed: exact E_test = Σ p_i (1 − q_i)^T. Dotted: Hutter's law "
            "C_β T^{−(1−1/β)} (N = ∞ asymptote) and, right, the same law at πT, "
            "which the mixed runs approach once πT ≫ k^β ζ(β) (the head is learnt "
            "from synthetic data, the tail only from the clean share). Horizontal: "
            "floors Σ_{i>k} p_i. Tolerance 4 SE."
        ),
    )


def plot(result: Result):
    a = result.arrays
    fig, axes = plotting.figure(ncols=2, width=4.8, height=3.6)
    T = a["T"][1:]
    ax = axes[0, 0]
    for g, k in enumerate(a["cuts"]):
        label = "no cut" if k >= NO_CUT else f"k = {int(k)}"
        c = plotting.simulation_band(
            ax, T, a["k_mean"][g, 1:], a["k_se"][g, 1:], label=label
        )
        plotting.theory_line(ax, T, a["k_theory"][g, 1:], color=c, label=None)
        if a["floors"][g] > 0:
            ax.axhline(a["floors"][g], color=c, lw=0.8, alpha=0.6)
    ax.plot(T, a["law"][1:], ":", color="k", label=r"$C_\beta T^{-(1-1/\beta)}$")
    ax.plot([], [], "-", color="gray", lw=0.8, alpha=0.6, label=r"floor $\sum_{i>k} p_i$")
    ax.set_title("tail cut at rank k", fontsize=10)
    ax = axes[0, 1]
    T = a["T_pi"][1:]
    for g, f in enumerate(a["fractions"]):
        c = plotting.simulation_band(
            ax, T, a["pi_mean"][g, 1:], a["pi_se"][g, 1:], label=f"π = {f:g}"
        )
        plotting.theory_line(ax, T, a["pi_theory"][g, 1:], color=c, label=None)
        if g > 0:
            ax.plot(T, a["law_pi"][g - 1, 1:], ":", color=c)
    ax.plot([], [], ":", color="gray", label=r"$C_\beta (\pi T)^{-(1-1/\beta)}$")
    ax.set_title("k = 30 plus clean fraction π", fontsize=10)
    for ax in axes[0]:
        ax.plot([], [], "--", color="gray", label="exact E_test")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training tokens T")
        ax.set_ylabel("test error")
        ax.legend(fontsize=7)
    return fig
