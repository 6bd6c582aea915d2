"""Wright–Fisher predictions for categorical self-training against simulation.

Stochastic checks: |seed mean − theory| <= 4 SE (z=4) at every recorded generation,
over 3000 seeds.
"""

import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import categorical_self_training as m
from collapse_jax.theory import categorical_self_training as th

Z = 4.0
SEEDS = 3000


def test_diversity_support_survival_and_mean_match_exact_wright_fisher():
    # One vmapped sweep over the Zipf exponent: s = 0 is the uniform start.
    cfg = m.Config(num_symbols=6, samples=10, initial="zipf", dtype="float64")
    grid = [0.0, 1.2]
    tr = cj.sweep(m, cfg, {"zipf_exponent": grid}, seeds=SEEDS, steps=30, every=3)
    preds = [th.predict(cfg.replace(zipf_exponent=s), tr.steps) for s in grid]
    pred = {k: np.stack([p[k] for p in preds]) for k in preds[0]}
    # atol 1e-12: at t = 0 all seeds hold p_0 (SE = 0), and model and theory compute
    # it in different float64 operation orders.
    agreement = cj.compare(tr, pred, z=Z, atol=1e-12)
    assert set(agreement.metrics) == {"diversity", "support", "p", "alive"}
    assert agreement.passed, agreement.table()


def test_diversity_decays_by_one_minus_one_over_n_per_generation():
    cfg = m.Config(num_symbols=4, samples=5)
    t = np.arange(6)
    d = np.asarray(th.diversity(cfg, t))
    # Deterministic identity; rtol 1e-12 is float64 rounding of a geometric sequence.
    np.testing.assert_allclose(d[1:] / d[:-1], 1 - 1 / 5, rtol=1e-12)
    np.testing.assert_allclose(d[0], 1 - 4 * 0.25**2, rtol=1e-12)


def test_survival_starts_at_one_and_decays_toward_fixation():
    cfg = m.Config(num_symbols=3, samples=4)
    s = np.asarray(th.survival(cfg, np.array([0, 1, 200])))
    np.testing.assert_allclose(s[0], 1.0)
    # One generation: P(Binomial(4, 1/3) > 0) = 1 − (2/3)^4, exact.
    np.testing.assert_allclose(s[1], 1 - (2 / 3) ** 4, rtol=1e-12)
    # After 200 generations (absorption time ~ 2n = 8) one symbol remains; each
    # survives with its fixation probability p_0,i = 1/3 (rtol 1e-6: the slowest
    # non-absorbed mode decays like (1 − 1/n)^t = 0.75^200 ≈ 1e-25).
    np.testing.assert_allclose(s[2], th.fixation_probability(cfg), rtol=1e-6)
    np.testing.assert_allclose(np.sum(s[2]), 1.0, rtol=1e-6)


def test_fractional_generations_raise():
    with pytest.raises(ValueError, match="whole numbers"):
        th.diversity(m.Config(), np.array([1.5]))
