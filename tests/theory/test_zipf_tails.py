"""Memorisation-model test error on Zipf data: exact formula vs simulation, and the
asymptotic scaling law and tail floor vs the exact formula with stated bounds.

Stochastic checks: |seed mean − theory| <= 4 SE (z=4) at every record, 600 seeds.
"""

import numpy as np
import pytest
from jax.scipy.special import zeta

import collapse_jax as cj
from collapse_jax.models import zipf_tails as m
from collapse_jax.theory import zipf_tails as th

Z = 4.0
SEEDS = 600
BASE = dict(vocab=1000, batch=20, beta=1.5, dtype="float64")


@pytest.mark.parametrize(
    "kw",
    [
        dict(cut_rank=1e9),  # clean data
        dict(cut_rank=40.0),  # tail cut at k = 40: error floor
        dict(cut_rank=40.0, clean_fraction=0.2),  # cut + 20% clean data
        dict(source="narrow", narrow_beta=2.5),  # narrowed tail
    ],
    ids=["clean", "cut", "cut_plus_clean", "narrow"],
)
def test_exact_expected_test_error_matches_memoriser_simulation(kw):
    cfg = m.Config(**BASE, **kw)
    tr = cj.simulate(m, cfg, seeds=SEEDS, steps=200, every=20)
    # atol 1e-12: at T = 0 every seed holds the same value (SE = 0) and model and
    # theory sum p_i in different orders, so they agree to float64 rounding only.
    agreement = cj.compare(tr, th.predict(cfg, tr.steps), z=Z, atol=1e-12)
    assert agreement.passed, agreement.table()


def test_cut_tail_creates_floor_and_clean_data_remove_it():
    cut = m.Config(**BASE, cut_rank=40.0)
    mixed = cut.replace(clean_fraction=0.2)
    T_large = np.array([10**7])
    floor = float(th.test_error_floor(cut))
    np.testing.assert_allclose(floor, float(np.sum(cut.test_probs()[40:])), rtol=1e-12)
    # At T = 2e8 tokens the cut learner has reached its floor (q_k^T ≈ 0) ...
    np.testing.assert_allclose(th.test_error(cut, T_large), floor, rtol=1e-9)
    # ... while mixing 20% clean data drives the error far below it.
    assert float(th.test_error(mixed, T_large)[0]) < 1e-3 * floor
    assert float(th.test_error_floor(mixed)) == 0.0


@pytest.mark.parametrize("beta", [1.5, 2.0, 3.0])
def test_clean_error_follows_hutter_law_t_to_minus_one_minus_one_over_beta(beta):
    N = 10**5
    cfg = m.Config(vocab=N, batch=1, beta=beta, cut_rank=1e12, dtype="float64")
    T = np.array([1e3, 3e3, 1e4])
    exact = np.asarray(th.test_error(cfg, T))
    law = np.asarray(th.test_error_scaling(cfg, T))
    # Bound on |Σ_i f(i) − ∫ f| for the unimodal f(x) = p(x)e^{−T p(x)}: twice its
    # maximum 1/(eT); plus the finite-vocabulary effects (tail mass beyond N, and the
    # renormalisation by it), each <= N^{1−β}/((β−1)ζ(β)).
    tail = N ** (1 - beta) / ((beta - 1) * float(zeta(beta, 1.0)))
    bound = 2 / (np.e * T) + 2 * tail
    assert np.all(np.abs(exact - law) <= bound), (exact, law, bound)


@pytest.mark.parametrize("k", [10, 100, 1000])
def test_tail_floor_scales_as_k_to_minus_beta_minus_one(k):
    N = 10**6
    beta = 1.5
    cfg = m.Config(vocab=N, batch=1, beta=beta, cut_rank=float(k), dtype="float64")
    floor = float(th.test_error_floor(cfg))
    z = float(zeta(beta, 1.0))
    # Integral sandwich: ∫_{k+1}^{N+1} x^{−β} <= Σ_{k<i<=N} i^{−β} <= ∫_k^∞ x^{−β}; p's
    # normaliser Σ_{i<=N} i^{−β} lies in [ζ(β) − N^{1−β}/(β−1), ζ(β)].
    upper = float(th.tail_floor_scaling(cfg)) / (1 - N ** (1 - beta) / ((beta - 1) * z))
    lower = ((k + 1) ** (1 - beta) - (N + 1) ** (1 - beta)) / ((beta - 1) * z)
    assert lower <= floor <= upper


def test_scaling_law_with_clean_fraction_uses_effective_tokens():
    cfg = m.Config(**BASE, cut_rank=40.0, clean_fraction=0.25)
    clean = cfg.replace(clean_fraction=1.0)
    np.testing.assert_allclose(
        th.test_error_scaling(cfg, 4000.0), th.test_error_scaling(clean, 1000.0)
    )


# Several generations of AI data. Stochastic checks as above: z = 4, 600 seeds.
GEN = dict(vocab=1000, batch=20, beta=1.5, narrow_beta=2.0, dtype="float64")


def test_three_generations_of_narrowing_with_and_without_clean_data_match_simulation():
    # β = 1.5 sharpened three times by β'/β = 4/3 (β_3 ≈ 3.56); π swept in one
    # compiled program.
    cfg = m.Config(**GEN, source="narrow", generations=3)
    fractions = [0.0, 0.1]
    tr = cj.sweep(
        m, cfg, {"clean_fraction": fractions}, seeds=SEEDS, steps=200, every=20
    )
    pred = np.stack(
        [th.test_error(cfg.replace(clean_fraction=f), tr.steps) for f in fractions]
    )
    # atol 1e-12: the T = 0 record has SE = 0 and differs by float64 rounding only.
    agreement = cj.compare(tr, {"test_error": pred}, z=Z, atol=1e-12)
    assert agreement.passed, agreement.table()


def test_four_generations_of_top_k_cutting_with_clean_data_match_simulation():
    cfg = m.Config(**GEN, cut_rank=40.0, clean_fraction=0.2, generations=4)
    tr = cj.simulate(m, cfg, seeds=SEEDS, steps=200, every=20)
    agreement = cj.compare(tr, th.predict(cfg, tr.steps), z=Z, atol=1e-12)
    assert agreement.passed, agreement.table()


@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_top_k_cutting_an_exact_law_is_idempotent_across_generations(fraction):
    # Deterministic (float64 rounding, rtol 1e-12): n rounds equal one round, in
    # the model's loop and in the theory's closed form.
    one = m.Config(**GEN, cut_rank=40.0, clean_fraction=fraction)
    five = one.replace(generations=5)
    np.testing.assert_allclose(five.train_probs(), one.train_probs(), rtol=1e-12)
    np.testing.assert_allclose(th.training_law(five), five.train_probs(), rtol=1e-12)


def test_model_generation_loop_equals_closed_form_zipf_of_narrowed_exponent():
    # π = 0: n rounds of g -> g^{β'/β} give Zipf(β_n), β_n = β (β'/β)^n. Float64
    # rounding through n log-domain rounds: rtol 1e-10.
    cfg = m.Config(**GEN, source="narrow", generations=3)
    i = np.arange(1, cfg.vocab + 1.0)
    zipf = i ** -float(th.generation_beta(cfg))
    np.testing.assert_allclose(cfg.train_probs(), zipf / zipf.sum(), rtol=1e-10)
    np.testing.assert_allclose(th.generation_beta(cfg), 1.5 * (4 / 3) ** 3)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_narrowed_error_follows_t_to_minus_beta_minus_one_over_beta_n(n):
    N, beta = 10**5, 2.0
    cfg = m.Config(
        vocab=N, batch=1, beta=beta, narrow_beta=3.0, source="narrow",
        generations=n, dtype="float64",
    )  # fmt: skip
    T = np.array([1e4, 1e5, 1e6])
    exact = np.asarray(th.test_error(cfg, T))
    law = np.asarray(th.narrowed_scaling(cfg, T))
    b_n = float(th.generation_beta(cfg))
    z, z_n = float(zeta(beta, 1.0)), float(zeta(b_n, 1.0))
    # |Σ_i f(i) − ∫_0^∞ f| <= 2 max f for the unimodal f(x) = p(x) e^{−T q(x)},
    # maximal where T q(x) = β/β_n; (1 − q)^T vs e^{−Tq} differ by <= 8/(e² T) in
    # p-mean; the vocabulary ends at N (tail mass of p, counted twice as before) and
    # q's finite normaliser moves the rate by a relative eps (effect <= eps/e).
    x_star = (T * b_n / (beta * z_n)) ** (1 / b_n)
    f_max = x_star**-beta * np.exp(-beta / b_n) / z
    tail = N ** (1 - beta) / ((beta - 1) * z)
    eps = N ** (1 - b_n) / ((b_n - 1) * (z_n - N ** (1 - b_n) / (b_n - 1)))
    bound = 2 * f_max + 8 / (np.e**2 * T) + 2 * tail + eps / np.e
    assert np.all(np.abs(exact - law) <= bound), (exact, law, bound)
    # The exponent shrinks by β/β' = 2/3 per round: c_n = (1/2)(2/3)^n.
    np.testing.assert_allclose(th.narrowed_exponent(cfg), 0.5 * (2 / 3) ** n)


def test_clean_data_restore_the_clean_exponent_after_narrowed_generations():
    # With a share π of clean tokens each round, q_i >= π p_i, so the error is at
    # most the clean memoriser's at rate π p: Σ p_i (1 − π p_i)^T (exact bound).
    # The narrowed part a_i is decreasing; past the rank m where T·a_m <= 0.01 it
    # costs at most a factor (1 − a_m/(1 − π p_1))^T: an exact lower bound.
    cfg = m.Config(
        vocab=10**5, batch=1, beta=2.0, narrow_beta=3.0, source="narrow",
        generations=2, clean_fraction=0.1, dtype="float64",
    )  # fmt: skip
    pi = cfg.clean_fraction
    p, q = np.asarray(cfg.test_probs()), np.asarray(th.training_law(cfg))
    a = (q - pi * p) / (1 - pi)
    T = np.array([1e5, 1e6])
    exact = np.asarray(th.test_error(cfg, T))
    upper = np.array([np.sum(p * (1 - pi * p) ** t) for t in T])
    lower = []
    for t in T:
        m_rank = int(np.argmax(t * a <= 0.01))
        shrink = (1 - a[m_rank] / (1 - pi * p[0])) ** t
        lower.append(shrink * np.sum(p[m_rank:] * (1 - pi * p[m_rank:]) ** t))
    assert np.all(lower <= exact) and np.all(exact <= upper)
    # Between T = 1e5 and 1e6 the local exponent is the clean c_0 = 1/2, not the
    # narrowed c_2 = 2/9: the sandwich pins it.
    slope = -np.log(exact[1] / exact[0]) / np.log(10.0)
    clean_slope = -np.log(upper[1] / upper[0]) / np.log(10.0)
    c_2 = float(th.narrowed_exponent(cfg))
    assert abs(slope - clean_slope) < abs(slope - c_2), (slope, clean_slope, c_2)
