"""The contract every toy model in ``collapse_jax.models.available()`` passes.

For each model, on its small config ``SMALL[name]``:

1. shapes: ``observe(init(key, cfg), cfg)`` is a dict of arrays, and ``simulate`` with
   ``seeds=3`` records every metric as ``[3, T, *shape]``, ``T = steps // every + 1``,
   where ``shape`` and the dtype are those ``observe`` returns for one state;
2. finite: every recorded metric is finite and no seed diverges;
3. vmapped seeds equal single runs: each seed of a 3-seed call is bit-for-bit the same
   as that seed run alone, and close to a plain Python loop of ``init``, ``step`` and
   ``observe`` on the same key, outside the engine's vmap and loops;
4. no retrace: a second call with other values of the float hyperparameters
   ``NEW_FLOATS[name]`` (pytree leaves of the Config) compiles nothing new;
5. bad configs: each ``(overrides, match)`` in ``BAD[name]``, applied on top of the small
   config, raises ``ValueError`` whose message matches ``match`` (naming the field).

A new model joins the contract by registering an entry in each of ``SMALL``, ``BAD``
and ``NEW_FLOATS``; a model left out of any of them fails here.
"""

import dataclasses
import functools

import chex
import jax
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax import models
from collapse_jax.simulate import seed_keys

STEPS, EVERY, SEEDS = 4, 2, 3  # one shape for every run of a model: one compile

# Small configs: a few steps of each run in well under a second once compiled.
SMALL = {
    "attention": dict(
        mode="train",
        seq_len=4,
        dim=5,
        depth=2,
        heads=2,
        batch=2,
        sigma_reparam=True,
        learn_gamma=True,
        mlp=True,
        skip=True,
        mlp_hidden=4,
    ),
    "categorical_self_training": dict(num_symbols=5, samples=7, dtype="float64"),
    "deep_linear": dict(
        depth=3,
        in_dim=3,
        hidden=4,
        out_dim=3,
        singular_values=(2.0, 1.0),
        init="random",
        init_scale=0.3,
    ),
    "deep_linear_ufm": dict(num_classes=3, dim=4, depth=2, per_class=2),
    # a 2-component mixture on an accumulating pool: EM, masking and the pool.
    "digits_density": dict(
        components=3,
        num_mixture=2,
        samples=8,
        em_iters=2,
        policy="accumulate",
        max_generations=4,
        probe_samples=16,
        reg=1e-3,
    ),
    # BYOL (EMA target) with a tiny MLP encoder: every path but the linear encoder.
    "digits_ssl": dict(hidden=4, embed_dim=3, batch_size=4, target="ema", ema=0.5),
    # Minibatch momentum SGD on 3 images per class: split, key-driven batches, probe.
    # Hidden width >= K keeps Σ_B of the hidden features well conditioned (NC1 inverts it).
    "digits_classifier": dict(
        widths=(12,), per_class=3, test_per_class=2, batch_size=12
    ),
    "linear_byol": dict(dim=3, batch_size=8, ema=0.5),
    "linear_contrastive": dict(dim=3, embed_dim=2, batch_size=8, loss="vicreg"),
    "linear_jepa": dict(depth=2),
    # The conditional, reparameterised variant: every code path but the projection.
    "linear_vae": dict(
        eigenvalues=(2.0, 1.0, 0.5),
        latent_dim=2,
        condition_dim=1,
        correlation=0.5,
        objective="mc",
        samples=10,
        batch_size=4,
        learn_sigma2=True,
    ),
    # verbalized lists, fresh comparisons, sampled vanilla PG: the most code paths.
    "preference_collapse": dict(
        num_items=3,
        level="distribution",
        list_size=2,
        reward="random",
        reward_scale=0.5,
        data="fresh",
        comparisons=16,
        optimizer="pg",
        policy_samples=3,
    ),
    # accumulate: the policy with the masked, growing pool.
    "recursive_gaussian": dict(
        dim=3, samples=6, max_generations=8, policy="accumulate", dtype="float64"
    ),
    "recursive_regression": dict(
        dim=5, samples=12, generator_samples=9, policy="mix", real_weight=0.4
    ),
    # two-layer ReLU under ⊥Grad: the path with the most code; float32 throughout.
    "softmax_collapse": dict(
        num_classes=3, dim=5, per_class=2, hidden=4, grad="perp", init_scale=0.5
    ),
    # ReLU embeddings, imbalanced classes, Adam: every branch but plain GD.
    "supcon": dict(
        num_classes=3, dim=4, per_class=(3, 2, 2), relu=True, optimizer="adam", lr=0.05
    ),
    "ufm": dict(num_classes=3, dim=4, per_class=3),
    # SimVQ with Adam on minibatches of a 2-D mixture: the most moving parts.
    "vector_quantizer": dict(
        num_codes=4,
        dim=2,
        data="mixture",
        quantizer="simvq",
        optimizer="adam",
        samples=8,
        eval_samples=16,
    ),
    # two generations: the loop of rounds is part of the compiled step.
    "zipf_tails": dict(
        vocab=200,
        batch=5,
        cut_rank=20.0,
        clean_fraction=0.1,
        generations=2,
        dtype="float64",
    ),
}

# (overrides of the small config, regex the ValueError message must match).
BAD = {
    "attention": [
        (dict(seq_len=1), "seq_len"),
        (dict(depth=0), "depth"),
        (dict(heads=0), "heads"),
        (dict(head_dim=9), "head_dim"),
        (dict(init="isotropic", head_dim=3), "head_dim"),
        (dict(tokens="orthonormal", dim=4), "dim"),  # needs dim >= seq_len + 1
        (dict(mode="eval"), "mode"),
        (dict(init="xavier"), "init"),
        (dict(qk_scale=-1.0), "qk_scale"),
        (dict(token_std=0.0), "token_std"),
        (dict(gamma=0.0), "gamma"),
        (dict(lr=0.0), "lr"),
        (dict(dtype="float16"), "dtype"),
    ],
    "categorical_self_training": [
        (dict(num_symbols=1), "num_symbols"),
        (dict(samples=0), "samples"),
        (dict(initial="dirichlet"), "initial"),
        (dict(zipf_exponent=-1.0), "zipf_exponent"),
        (dict(dtype="int32"), "dtype"),
    ],
    "deep_linear": [
        (dict(depth=1), "depth"),
        (dict(singular_values=(3.0, 2.0, 1.0, 0.5)), "singular_values"),
        (dict(singular_values=(1.0, -1.0)), "singular_values"),
        (dict(input_eigs=(1.0,)), "input_eigs"),
        (dict(init="orthogonal"), "init"),
        (dict(lr=0.0), "lr"),
        (dict(init_scale=-0.1), "init_scale"),
        (dict(dtype="float16"), "dtype"),
    ],
    "deep_linear_ufm": [
        (dict(num_classes=1), "num_classes"),
        (dict(depth=0), "depth"),
        (dict(per_class=(2, 2)), "per_class"),
        (dict(loss="hinge"), "loss"),
        (dict(lambda_w_scale=(1.0,)), "lambda_w_scale"),
        (dict(lambda_w=0.0), "lambda_w"),
        (dict(lambda_h=-1.0), "lambda_h"),
        (dict(lr=0.0), "lr"),
        (dict(dtype="bfloat16"), "dtype"),
    ],
    "digits_classifier": [
        (dict(arch="resnet"), "arch"),
        (dict(widths=()), "widths"),
        (dict(widths=(0,)), r"widths\[0\]"),
        (dict(arch="cnn", channels=(2, 2, 2, 2)), "channels"),
        (dict(per_class=200), r"per_class\[0\]=200 is out of range"),
        (dict(per_class=(3, 3)), "per_class has 2 counts"),
        (dict(test_per_class=0), "test_per_class"),
        (dict(loss="hinge"), "loss"),
        (dict(optimizer="lbfgs"), "optimizer"),
        (dict(batch_size=31), "batch_size"),
        (dict(dtype="float16"), "dtype"),
        (dict(lr=0.0), "lr"),
        (dict(momentum=1.0), "momentum"),
        (dict(weight_decay=-1e-4), "weight_decay"),
    ],
    "digits_density": [
        (dict(components=0), "components"),
        (dict(components=65), "components"),
        (dict(num_mixture=0), "num_mixture"),
        (dict(samples=3), "samples"),  # needs M >= d + 1 = 4
        (dict(em_iters=0), "em_iters"),
        (dict(policy="mix"), "policy"),
        (dict(max_generations=0), "max_generations"),
        (dict(probe_samples=0), "probe_samples"),
        (dict(dtype="float16"), "dtype"),
        (dict(reg=-1e-3), "reg"),
    ],
    "digits_ssl": [
        (dict(hidden=-1), "hidden"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(predictor="yes"), "predictor"),
        (dict(stop_gradient=None), "stop_gradient"),
        (dict(target="momentum"), "target"),
        (dict(stop_gradient=False), "stop_gradient"),  # an EMA target is not trained
        (dict(loss="infonce"), "loss"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_shift=4), "max_shift"),
        (dict(dtype="float16"), "dtype"),
        (dict(lr=0.0), "lr"),
        (dict(momentum=1.0), "momentum"),
        (dict(weight_decay=-1e-4), "weight_decay"),
        (dict(ema=0.0), "ema"),
        (dict(noise=-0.1), "noise"),
        (dict(init_scale=0.0), "init_scale"),
    ],
    "linear_byol": [
        (dict(dim=0), "dim"),
        (dict(batch_size=-1), "batch_size"),
        (dict(predictor="mlp"), "predictor"),
        (dict(init="zeros"), "init"),
        (dict(lr=0.0), "lr"),
        (dict(alpha_p=-1.0), "alpha_p"),
        (dict(ema=0.0), "ema"),
        (dict(ema=1.5), "ema"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(aug_var=-1.0), "aug_var"),
        (dict(s0=0.0), "s0"),
        (dict(dp_rho=1.0), "dp_rho"),
        (dict(dp_eps=-1e-3), "dp_eps"),
        (dict(dtype="float16"), "dtype"),
    ],
    "linear_contrastive": [
        (dict(dim=0), "dim"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(batch_size=1), "batch_size"),
        (dict(batch_size=-2), "batch_size"),
        (dict(loss="barlow"), "loss"),
        (dict(lr=0.0), "lr"),
        (dict(aug_var=-0.1), "aug_var"),
        (dict(temperature=0.0), "temperature"),
        (dict(gamma=0.0), "gamma"),
        (dict(var_eps=-1.0), "var_eps"),
        (dict(inv_weight=-1.0), "inv_weight"),
        (dict(dtype="int32"), "dtype"),
    ],
    "linear_jepa": [
        (dict(lam=(1.0, -1.0)), "lam"),
        (dict(rho=(1.0, 0.0)), "rho"),
        (dict(lam=(1.0,), rho=(1.0, 2.0)), "rho"),
        (dict(lam=()), "lam"),
        (dict(depth=0), "depth"),
        (dict(objective="byol"), "objective"),
        (dict(lr=-0.1), "lr"),
        (dict(init_scale=0.0), "init_scale"),
        (dict(dtype="float16"), "dtype"),
    ],
    "linear_vae": [
        (dict(eigenvalues=()), "eigenvalues"),
        (dict(eigenvalues=(1.0, -1.0)), "eigenvalues"),
        (dict(latent_dim=4), "latent_dim"),
        (dict(condition_dim=-1), "condition_dim"),
        (dict(objective="iwae"), "objective"),
        (dict(samples=0), "samples"),
        (dict(batch_size=0), "batch_size"),
        (dict(decoder="mlp"), "decoder"),
        (dict(optimizer="lbfgs"), "optimizer"),
        (dict(beta=0.0), "beta"),
        (dict(sigma2=-1.0), "sigma2"),
        (dict(correlation=1.0), "correlation"),
        (dict(lipschitz=-0.5), "lipschitz"),
        (dict(lr=float("nan")), "lr"),
        (dict(lr_decay=-1.0), "lr_decay"),
        (dict(dtype="float16"), "dtype"),
    ],
    "preference_collapse": [
        (dict(num_items=1), "num_items"),
        (dict(level="token"), "level"),
        (dict(list_size=0), "list_size"),
        (dict(num_items=12, list_size=20), "list_size"),  # too many list types
        (dict(reward="linear"), "reward"),
        (dict(reward_seed=-1), "reward_seed"),
        (dict(reward_model="dpo"), "reward_model"),
        (dict(data="replay"), "data"),
        (dict(comparisons=0), "comparisons"),
        (dict(optimizer="adam"), "optimizer"),
        (dict(policy_samples=-1), "policy_samples"),
        (dict(dtype="float16"), "dtype"),
        (dict(zipf_exponent=-1.0), "zipf_exponent"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(beta=0.0), "beta"),
        (dict(reward_scale=-0.1), "reward_scale"),
        (dict(lr=0.0), "lr"),
        (dict(rm_lr=-1.0), "rm_lr"),
    ],
    "recursive_gaussian": [
        (dict(dim=0), "dim"),
        (dict(samples=1, covariance="diagonal"), "samples"),
        (dict(samples=3, covariance="full"), "samples"),  # needs M >= d + 1 = 4
        (dict(estimator="bessel"), "estimator"),
        (dict(policy="keep"), "policy"),
        (dict(covariance="low_rank"), "covariance"),
        (dict(max_generations=0), "max_generations"),
        (dict(real_fraction=1.5), "real_fraction"),
        (dict(real_fraction=-0.1), "real_fraction"),
        (dict(dtype="float16"), "dtype"),
    ],
    "recursive_regression": [
        (dict(dim=0), "dim"),
        (dict(policy="refit"), "policy"),
        (dict(fixed_design="yes"), "fixed_design"),
        (dict(spectrum="flat"), "spectrum"),
        (dict(dtype="float16"), "dtype"),
        (dict(samples=4), "samples"),  # fewer than dim=5
        (dict(generator_samples=7.5), "generator_samples"),  # not an integer
        (dict(noise=-1.0), "noise"),
        (dict(generator_noise=-0.1), "generator_noise"),
        (dict(ridge=-1e-3), "ridge"),
        (dict(generator_ridge=-1.0), "generator_ridge"),
        (dict(real_weight=1.5), "real_weight"),
        (dict(target_decay=-1.0), "target_decay"),
        (dict(interpolate=True, generator_samples=6), "generator_samples"),  # > dim
        (dict(interpolate="no"), "interpolate"),
        (dict(real_weight=-0.1), "real_weight"),
        (dict(signal=-1.0), "signal"),
        (dict(decay=-2.0), "decay"),
    ],
    "softmax_collapse": [
        (dict(num_classes=1), "num_classes"),
        (dict(dim=2), "dim"),
        (dict(per_class=3), "per_class"),
        (dict(hidden=-1), "hidden"),
        (dict(loss="sparsemax"), "loss"),
        (dict(grad="adam"), "grad"),
        (dict(dtype="int8"), "dtype"),
        (dict(param_dtype="float16"), "param_dtype"),
        (dict(dtype="float64"), "dtype='float64' needs param_dtype"),
        (dict(lr=0.0), "lr"),
        (dict(margin=-1.0), "margin"),
        (dict(noise=-0.1), "noise"),
        (dict(init_gap=-1.0), "init_gap"),
        (dict(init_scale=-1.0), "init_scale"),
    ],
    "supcon": [
        (dict(num_classes=1), "num_classes"),
        (dict(dim=2), "dim"),  # needs dim >= num_classes
        (dict(per_class=(3, 2)), "per_class"),
        (dict(per_class=1), "per_class"),
        (dict(per_class=(3, 1, 2)), r"per_class\[1\]"),  # every anchor needs a positive
        (dict(relu="yes"), "relu"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(dtype="float16"), "dtype"),
        (dict(temperature=0.0), "temperature"),
        (dict(lr=-0.1), "lr"),
    ],
    "ufm": [
        (dict(num_classes=1), "num_classes=1 is out of range"),
        (dict(dim=0), "dim=0 is out of range"),
        (dict(per_class=(3, 3)), "per_class has 2 counts"),
        (dict(per_class=0), "per_class=0 is out of range"),
        (dict(loss="hinge"), "loss='hinge' is not allowed"),
        (dict(optimizer="lbfgs"), "optimizer='lbfgs' is not allowed"),
        (dict(lambda_w=0.0), r"lambda_w=0.0 is out of range: .* in \(0.0, inf\)"),
        (dict(lambda_b=-1.0), "lambda_b=-1.0 is out of range"),
        (dict(lr=float("nan")), "lr=nan is out of range"),
        (dict(momentum=1.0), "momentum=1.0 is out of range"),
        (dict(dtype="float16"), "dtype='float16' is not allowed"),
        (dict(smoothing=1.0), r"smoothing=1.0 is out of range: .* in \[0.0, 1.0\)"),
        (dict(tether=True, dim=2), "tether=True needs num_classes <= dim"),
        (dict(input_noise=-1.0), "input_noise=-1.0 is out of range"),
        (dict(mixup=True, loss="ce"), "mixup=True needs loss='mse'"),
        (dict(mixup_alpha=0.0), "mixup_alpha=0.0 is out of range"),
    ],
    "vector_quantizer": [
        (dict(num_codes=1), "num_codes"),
        (dict(dim=0), "dim"),
        (dict(data="gaussian"), "data"),
        (dict(num_components=0), "num_components"),
        (dict(quantizer="ema"), "quantizer"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(sampling="stratified"), "sampling"),
        (dict(sampling="grid"), "sampling"),  # grid needs 1-D uniform data
        (dict(samples=0), "samples"),
        (dict(eval_samples=0), "eval_samples"),
        (dict(codebook_init="kmeans"), "codebook_init"),
        (dict(dtype="float16"), "dtype"),
        (dict(lr=0.0), "lr"),
        (dict(beta=-0.1), "beta"),
        (dict(init_margin=-1.0), "init_margin"),
        (dict(init_offset=float("nan")), "init_offset"),
        (dict(init_spacing=0.0), "init_spacing"),
        (dict(basis_scale=0.0), "basis_scale"),
        (dict(mixture_std=0.0), "mixture_std"),
    ],
    "zipf_tails": [
        (dict(vocab=1), "vocab"),
        (dict(batch=0), "batch"),
        (dict(source="top_p"), "source"),
        (dict(beta=1.0), "beta"),
        (dict(beta=0.5), "beta"),
        (dict(cut_rank=0.5), "cut_rank"),
        (dict(narrow_beta=1.0), "narrow_beta"),
        (dict(clean_fraction=1.2), "clean_fraction"),
        (dict(generations=-1), "generations"),
        (dict(dtype="bfloat16"), "dtype"),
    ],
}

# Other valid values of some float hyperparameters (pytree leaves): a second run with
# them must reuse the first run's compiled programs.
NEW_FLOATS = {
    "attention": dict(lr=0.05, gamma=0.7, qk_scale=2.0, token_mean=0.5),
    "categorical_self_training": dict(zipf_exponent=2.0),
    "deep_linear": dict(lr=0.02, init_scale=0.2),
    "deep_linear_ufm": dict(lr=0.05, lambda_w=0.01),
    "digits_density": dict(reg=1e-2),
    "digits_ssl": dict(lr=0.02, momentum=0.5, weight_decay=1e-3, ema=0.9, noise=0.2),
    "digits_classifier": dict(lr=0.02, weight_decay=1e-3),
    "linear_byol": dict(weight_decay=0.1, lr=0.02),
    "linear_contrastive": dict(temperature=0.5, aug_var=0.4),
    "linear_jepa": dict(lr=0.01, init_scale=0.2),
    "linear_vae": dict(beta=0.5, sigma2=0.7, correlation=0.8, lr=0.02),
    "preference_collapse": dict(
        alpha=1.0, beta=0.3, reward_scale=0.2, lr=0.2, rm_lr=1.0, zipf_exponent=1.5
    ),
    "recursive_gaussian": dict(real_fraction=0.7),
    "recursive_regression": dict(
        noise=0.3, ridge=0.2, real_weight=0.9, target_decay=0.5
    ),
    "softmax_collapse": dict(lr=0.5, noise=0.3, init_scale=0.2),
    "supcon": dict(temperature=0.3, lr=0.1),
    "ufm": dict(
        lr=0.05, lambda_h=0.02, smoothing=0.1, input_noise=0.3, mixup_alpha=2.0
    ),
    "vector_quantizer": dict(lr=0.05, basis_scale=0.5, mixture_std=0.1),
    "zipf_tails": dict(cut_rank=50.0, clean_fraction=0.2),
}

REGISTRIES = {"SMALL": SMALL, "BAD": BAD, "NEW_FLOATS": NEW_FLOATS}
MODELS = models.available()


def _small(name):
    """The model module and its small config; fails clearly if it is not registered."""
    missing = [r for r, entries in REGISTRIES.items() if name not in entries]
    if missing:
        pytest.fail(
            f"model {name!r} is in models.available() but has no entry in "
            f"{', '.join(missing)} of tests/test_model_contract.py: register a small "
            "config, bad-config cases and new float values for it there"
        )
    model = models.get(name)
    return model, model.Config(**SMALL[name])


@functools.cache
def _jitted(name):
    """``init``, ``step`` and ``observe`` of a model, each jitted once for the file."""
    model = models.get(name)
    return tuple(jax.jit(f) for f in (model.init, model.step, model.observe))


def _first_observation_shapes(name, cfg):
    model = models.get(name)
    state = jax.eval_shape(model.init, jax.random.PRNGKey(0), cfg)
    return jax.eval_shape(model.observe, state, cfg)


def _run(model, cfg, seeds=SEEDS, chunk=None):
    return cj.simulate(model, cfg, seeds=seeds, steps=STEPS, every=EVERY, chunk=chunk)


@functools.cache
def _three_seeds(name):
    """The ``SEEDS``-seed run of the small config, shared by the tests of one model
    (tests/conftest.py keeps them on one pytest-xdist worker)."""
    model, cfg = _small(name)
    return _run(model, cfg)


def _tolerance(dtype):
    # Outside the engine XLA may fuse the same ops differently and round differently:
    # rtol is ~80 float32 ulps (~4500 float64 ulps), room for that rounding to compound
    # over STEPS steps; atol covers metrics that are zero up to rounding.
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-12, atol=1e-12)
    return dict(rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_model_is_registered(name):
    _small(name)
    assert BAD[name], f"BAD[{name!r}] needs at least one bad config"
    assert NEW_FLOATS[name], f"NEW_FLOATS[{name!r}] needs at least one float field"
    for overrides, match in BAD[name]:
        assert any(field in match for field in overrides), (
            f"BAD[{name!r}]: {match!r} does not name any of the fields {list(overrides)}"
        )


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_every_registered_name_is_a_model(registry):
    stale = sorted(set(REGISTRIES[registry]) - set(MODELS))
    assert not stale, f"{registry} registers {stale}, not in models.available()"


@pytest.mark.parametrize("name", MODELS)
def test_metrics_have_seed_and_time_axes_over_the_shape_observe_returns(name):
    model, cfg = _small(name)
    one = _first_observation_shapes(name, cfg)
    assert isinstance(one, dict) and one, "observe must return a non-empty dict"
    for metric, value in one.items():
        assert isinstance(value, jax.ShapeDtypeStruct), f"{metric}: {type(value)}"
    tr = _three_seeds(name)
    assert set(tr.metrics) == set(one)
    T = STEPS // EVERY + 1
    for metric, value in one.items():
        chex.assert_shape(tr[metric], (SEEDS, T) + value.shape)
        assert tr[metric].dtype == value.dtype, metric


@pytest.mark.parametrize("name", MODELS)
def test_small_config_stays_finite(name):
    # Record 0 is observe(init(key)) of every seed: the initial state is checked too.
    tr = _three_seeds(name)
    chex.assert_tree_all_finite(tr.metrics)
    assert not tr.divergences


@pytest.mark.parametrize("name", MODELS)
def test_vmapped_seeds_equal_single_seed_runs(name):
    model, cfg = _small(name)
    many = _three_seeds(name)
    init, step, observe = _jitted(name)
    for s in range(SEEDS):
        alone = _run(model, cfg, seeds=[s])
        for metric in many.metrics:
            np.testing.assert_array_equal(
                many[metric][s], alone[metric][0], err_msg=f"seed {s}: {metric}"
            )
        # The same seed, step by step, outside the engine's vmap and loops.
        state = init(seed_keys(0, np.array([s]))[0], cfg)
        for t in range(STEPS + 1):
            if t % EVERY == 0:
                for metric, value in observe(state, cfg).items():
                    np.testing.assert_allclose(
                        many[metric][s, t // EVERY],
                        value,
                        **_tolerance(value.dtype),
                        err_msg=f"seed {s}, step {t}: {metric}",
                    )
            state = step(state, cfg)


@pytest.mark.parametrize("name", MODELS)
def test_new_float_hyperparameters_do_not_recompile(name):
    model, cfg = _small(name)
    leaves = {
        f.name for f in dataclasses.fields(cfg) if f.metadata.get("pytree_node", True)
    }
    for field, value in NEW_FLOATS[name].items():
        assert field in leaves, f"{field} is static, not a pytree leaf of the Config"
        assert value != getattr(cfg, field), (
            f"NEW_FLOATS[{name!r}][{field!r}] unchanged"
        )
    # The engine's jitted programs for this model (as in tests/test_engine.py).
    compiled = cj.simulate.__globals__["_compiled"](model)
    # A run of one chunk is one program; the split programs are checked below.
    programs = {"whole": compiled.whole}
    _run(model, cfg)
    before = {p: f._cache_size() for p, f in programs.items()}
    assert all(before.values()), "the run did not use the one-program path"
    _run(model, cfg.replace(**NEW_FLOATS[name]))
    after = {p: f._cache_size() for p, f in programs.items()}
    assert after == before, f"new float values recompiled: {before} -> {after}"


# A run of one chunk is one program; chunked runs use the split start and advance
# programs. The optimisation barrier between init and steps makes them compute the same
# bits. Checked on models of different structure (optax gradients, rejection-sampling
# while loops and fixed-size solves, softmax attention, a codebook argmin) rather than
# every model: the split programs cost about 3 s of compiling per model.
SPLIT_CHECKED = ("ufm", "recursive_regression", "attention", "vector_quantizer")


@pytest.mark.parametrize("name", SPLIT_CHECKED)
def test_chunked_runs_equal_the_one_program_run(name):
    model, cfg = _small(name)
    whole = _three_seeds(name)
    chunked = _run(model, cfg, chunk=EVERY)
    for metric in whole.metrics:
        np.testing.assert_array_equal(chunked[metric], whole[metric], err_msg=metric)
    # The split programs, too, take new float values without recompiling.
    compiled = cj.simulate.__globals__["_compiled"](model)
    programs = {p: getattr(compiled, p) for p in ("start", "advance")}
    before = {p: f._cache_size() for p, f in programs.items()}
    assert all(before.values()), "the chunked run did not use the split programs"
    _run(model, cfg.replace(**NEW_FLOATS[name]), chunk=EVERY)
    after = {p: f._cache_size() for p, f in programs.items()}
    assert after == before, f"new float values recompiled: {before} -> {after}"


def _bad_cases():
    for name in MODELS:
        for overrides, match in BAD.get(name, ()):
            yield pytest.param(
                name, overrides, match, id=f"{name}-{'-'.join(overrides)}"
            )


@pytest.mark.parametrize("name, overrides, match", _bad_cases())
def test_bad_config_raises_naming_the_field(name, overrides, match):
    model, _ = _small(name)
    with pytest.raises(ValueError, match=match):
        model.Config(**{**SMALL[name], **overrides})
