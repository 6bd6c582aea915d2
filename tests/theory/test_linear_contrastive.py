"""linear_contrastive theory vs simulation: InfoNCE dimensional collapse (Jing et al.
2022, arXiv 2110.09348), VICReg spectrum (Bardes et al. 2022, arXiv 2105.04906), and
the complete collapse of plain invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.metrics import spectral
from collapse_jax.models import linear_contrastive as m
from collapse_jax.theory import linear_contrastive as th

AUG = [0.3, 1.0, 3.0]
# The theory, jitted: called eagerly it would compile each of its primitives.
predict_limit = jax.jit(lambda cfg: th.predict(cfg, None))
# Two-seed runs in one block of two: the default block of 64 would step 62 padding
# runs along (the block size never changes a run's numbers).
BLOCK2 = dict(block_size=2)


@pytest.fixture(scope="module")
def infonce_sweep():
    cfg = m.Config(dim=4, embed_dim=4, batch_size=0, lr=0.05, dtype="float64")
    return cj.sweep(
        m, cfg, {"aug_var": AUG}, steps=3000, every=1500, seeds=2, block_size=6
    )


def test_infonce_population_spectrum_is_the_closed_form_minimiser(infonce_sweep):
    steps = infonce_sweep.steps
    pred = jax.jit(jax.vmap(lambda c: th.predict(c, steps)))(infonce_sweep.cfg)
    # Gradient descent converges linearly; the last two records (t = 75, 150) agree
    # to < 1e-9, so the residual optimisation error is below the 1e-6 floor.
    drift = np.abs(np.diff(infonce_sweep.mean("aug_spectrum")[:, -2:], axis=1))
    assert drift.max() < 1e-9
    agreement = cj.compare(infonce_sweep, pred, z=4, atol=1e-6, at="final")
    assert agreement.passed, {k: v.summary() for k, v in agreement.metrics.items()}


def test_infonce_effective_rank_falls_as_augmentation_grows(infonce_sweep):
    rank = infonce_sweep.mean("effective_rank")[:, -1]
    assert np.all(np.diff(rank) < 0)  # dimensional collapse with stronger augmentation
    theory_rank = jax.jit(
        lambda cfg: spectral.effective_rank_from_singular_values(
            jnp.sqrt(predict_limit(cfg)["spectrum"])
        )
    )
    for g, aug in enumerate(AUG):
        cfg = m.Config(dim=4, embed_dim=4, batch_size=0, aug_var=aug)
        assert rank[g] == pytest.approx(float(theory_rank(cfg)), rel=1e-6)


def test_vicreg_spectrum_is_the_water_filling_optimum_within_hinge_chatter():
    # Gradient descent chatters around the variance hinge with an amplitude O(lr), so
    # the tolerance is 1.5 × the Richardson estimate |sim(lr) − sim(lr/2)| of the
    # error of the lr/2 run, applied on the last quarter of the run (t >= 15).
    cfg = m.Config(
        dim=4,
        embed_dim=4,
        batch_size=0,
        loss="vicreg",
        inv_weight=1.0,
        aug_var=0.3,
        dtype="float64",
    )
    assert bool(jax.jit(th.vicreg_hinge_active)(cfg))
    runs = {}
    for lr in (0.002, 0.001):
        steps = int(round(20 / lr))
        runs[lr] = cj.simulate(
            m, cfg.replace(lr=lr), steps=steps, every=steps // 20, seeds=2, **BLOCK2
        )
    late = slice(15, None)
    coarse, fine = (runs[lr].mean("aug_spectrum")[late] for lr in (0.002, 0.001))
    richardson = np.max(np.abs(coarse - fine))
    theory = np.asarray(predict_limit(cfg)["aug_spectrum"])
    prediction = np.full(runs[0.001].mean("aug_spectrum").shape, np.nan)
    prediction[late] = theory
    agreement = cj.compare(
        runs[0.001],
        {"aug_spectrum": prediction},
        z=4,
        atol=1.5 * richardson,
        at="trajectory",
    )
    assert agreement.passed, agreement["aug_spectrum"].summary()
    assert richardson < 0.05 * theory.max()


@pytest.mark.parametrize("batch_size", [0, 8])
def test_invariance_alone_collapses_at_the_predicted_geometric_rate(batch_size):
    cfg = m.Config(
        dim=4,
        embed_dim=3,
        batch_size=batch_size,
        loss="invariance",
        inv_weight=1.0,
        lr=0.01,
        aug_var=0.5,
        dtype="float64",
    )
    traj = cj.simulate(m, cfg, seeds=400, steps=100, every=20)
    pred = {"total_variance": th.predict(cfg, traj.steps)["total_variance"]}
    # 400 seeds (random initial W and batches), |mean − theory| ≤ 4 SE.
    agreement = cj.compare(traj, pred, z=4, at="trajectory")
    assert agreement.passed, agreement["total_variance"].summary()


def test_vicreg_keeps_full_rank_where_plain_invariance_collapses():
    common = dict(
        dim=4, embed_dim=4, batch_size=32, inv_weight=1.0, aug_var=1.0, lr=0.002
    )
    vic = cj.simulate(
        m, m.Config(loss="vicreg", **common), steps=2000, every=2000, seeds=2, **BLOCK2
    )
    inv = cj.simulate(
        m,
        m.Config(loss="invariance", **common),
        steps=2000,
        every=2000,
        seeds=2,
        **BLOCK2,
    )
    # VICReg: every embedding direction keeps variance of order gamma² = 1.
    assert np.all(vic.final("aug_spectrum") > 0.3)
    assert np.all(vic.final("effective_rank") > 3.5)
    # Invariance: E total variance ∝ ρ^t, ρ ≈ (1 − 4 lr λ_inv σ²)², ρ^2000 ≈ e^{−32}.
    assert np.all(inv.final("total_variance") < 1e-12)


def test_theory_refuses_regimes_it_does_not_cover():
    with pytest.raises(ValueError, match="aug_var"):
        th.predict(m.Config(batch_size=0, aug_var=0.0), None)
    with pytest.raises(ValueError, match="hinge"):
        th.predict(m.Config(batch_size=0, loss="vicreg", inv_weight=25.0), None)
    with pytest.raises(ValueError, match="batch_size"):
        th.predict(m.Config(batch_size=64), None)


def test_minibatch_invariance_loss_is_unbiased_for_the_population_loss():
    # E over views of the batch invariance loss equals the population objective
    # exactly; mean of 4000 batches within 5 SE.
    cfg = m.Config(
        dim=3,
        embed_dim=2,
        batch_size=8,
        loss="invariance",
        dtype="float64",
        aug_var=0.7,
    )

    @jax.jit
    def losses(key, keys):
        W = m.init(key, cfg).W

        def one(key):
            x1, x2 = m._views(key, cfg, np.float64)
            return m.loss(W, x1, x2, cfg)

        return jax.vmap(one)(keys), m.population_loss(W, cfg)

    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    vals, population = losses(jax.random.PRNGKey(0), keys)
    vals = np.asarray(vals)
    se = float(np.std(vals, ddof=1) / np.sqrt(4000))
    assert abs(float(np.mean(vals)) - float(population)) <= 5 * se
