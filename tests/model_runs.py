"""A model's own ``init``, ``step`` and ``observe`` in one jitted program, outside the
engine: for tests whose claim is about the model or its theory, not the engine
(tests/test_model_contract.py checks that the engine equals this loop for every model).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax


@functools.partial(jax.jit, static_argnums=0)
def run(model, key, cfg, steps):
    """``(state, observe(state))`` after ``steps`` steps from ``init(key)``: one
    program per model and config (``steps`` is traced, so the loop compiles once)."""
    state = lax.fori_loop(
        0, steps, lambda _, s: model.step(s, cfg), model.init(key, cfg)
    )
    return state, model.observe(state, cfg)


def final_observations(model, cfg, keys, steps):
    """``[P, S]`` observations after ``steps`` steps; ``cfg`` leaves are ``[P]``, keys
    ``[S, 2]``. Call it under ``jax.jit``.

    The P·S runs go one after another (``lax.map``): a batched program (``vmap``) of
    the metrics' linear algebra takes about twice as long to compile.
    """
    points, seeds = jax.tree.leaves(cfg)[0].shape[0], keys.shape[0]

    def one(args):
        c, key = args
        state = model.init(key, c)
        state = lax.fori_loop(0, steps, lambda _, s: model.step(s, c), state)
        return model.observe(state, c)

    runs = (
        jax.tree.map(lambda x: jnp.repeat(x, seeds, axis=0), cfg),
        jnp.tile(keys, (points, 1)),
    )
    out = lax.map(one, runs)
    return jax.tree.map(lambda x: x.reshape((points, seeds) + x.shape[1:]), out)
