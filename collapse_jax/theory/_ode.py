"""Fixed-step RK4 for the theory modules' mode ODEs, read at training-step indices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def rk4_at_steps(rhs, y0, t, step_time, substeps: int):
    """Solve ``dy/dt = rhs(y)`` from ``y0`` and read the solution at step indices ``t``.

    Classical 4th-order Runge–Kutta with the fixed step ``h = step_time / substeps``:
    ``substeps`` RK4 steps per training step, so step index ``k`` is time
    ``k · step_time``.

    Args:
      rhs: the autonomous vector field, a pytree → a pytree shaped like ``y0``.
      y0: pytree of arrays, the state at step 0.
      t: non-negative integer step indices of any shape; concrete, since ``max(t)``
        sets the scan length.
      step_time: time per training step (the learning rate).
      substeps: RK4 steps per training step.

    Returns:
      A pytree like ``y0`` whose leaves are ``[*t.shape, *leaf.shape]``.
    """
    t = np.asarray(t)
    n = int(t.max()) if t.size else 0
    h = step_time / substeps

    def axpy(c, k, y):
        return jax.tree.map(lambda y, k: y + c * k, y, k)

    def combine(y, k1, k2, k3, k4):
        return y + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    def rk4(y, _):
        k1 = rhs(y)
        k2 = rhs(axpy(0.5 * h, k1, y))
        k3 = rhs(axpy(0.5 * h, k2, y))
        k4 = rhs(axpy(h, k3, y))
        return jax.tree.map(combine, y, k1, k2, k3, k4), None

    # Nested scans, so memory holds one state per training step, not per substep.
    def one_step(y, _):
        y, _ = lax.scan(rk4, y, None, length=substeps)
        return y, y

    _, ys = lax.scan(one_step, y0, None, length=n)
    # Every step is kept and then gathered: the states are a few modes, so this is
    # cheap and lets ``t`` be unsorted, repeated or multi-dimensional.
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], axis=0)[t], y0, ys)
