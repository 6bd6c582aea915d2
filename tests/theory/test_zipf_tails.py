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
