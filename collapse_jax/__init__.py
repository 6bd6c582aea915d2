"""collapse_jax: toy models of collapse, simulated in JAX and checked against theory."""

from collapse_jax._config import config_to_dict
from collapse_jax.compare import Agreement, MetricAgreement, compare
from collapse_jax.simulate import DivergenceWarning, expand_grid, simulate, sweep
from collapse_jax.trajectory import Divergence, Trajectory

__version__ = "0.1.0"

__all__ = [
    "Agreement",
    "Divergence",
    "DivergenceWarning",
    "MetricAgreement",
    "Trajectory",
    "compare",
    "config_to_dict",
    "expand_grid",
    "simulate",
    "sweep",
]
