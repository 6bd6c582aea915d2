"""collapse_jax: toy models of collapse, simulated in JAX and checked against theory."""

import os as _os
import sys as _sys

if "jax" not in _sys.modules and _os.path.basename(_sys.argv[0]) == "collapse-jax":
    # The command line turns on the persistent compilation cache, and XLA:CPU logs a
    # false alarm at ERROR level each time it loads a cached program (openxla/xla#44565:
    # tuning flags checked as CPU features). JAX's C++ logging reads this at import.
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collapse_jax import _runtime  # noqa: E402

# Before anything creates JAX's backends: one host device per core (see _runtime).
_runtime.use_every_cpu_core()

from collapse_jax import config  # noqa: E402
from collapse_jax.compare import Agreement, MetricAgreement, compare  # noqa: E402
from collapse_jax.config import ConfigError, config_to_dict  # noqa: E402
from collapse_jax.multihost import gather_processes, process_seeds  # noqa: E402
from collapse_jax.simulate import (  # noqa: E402
    DivergenceWarning,
    expand_grid,
    simulate,
    sweep,
)
from collapse_jax.trajectory import Divergence, Trajectory  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Agreement",
    "ConfigError",
    "Divergence",
    "DivergenceWarning",
    "MetricAgreement",
    "Trajectory",
    "compare",
    "config",
    "config_to_dict",
    "expand_grid",
    "gather_processes",
    "process_seeds",
    "simulate",
    "sweep",
]
