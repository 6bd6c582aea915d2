"""Theory-vs-simulation overlays: simulation mean ± SE band under the theory line."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no screen is needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["figure", "simulation_band", "theory_line"]


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.3):
    """A figure with an ``[nrows, ncols]`` grid of axes (always a 2-D array)."""
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width * ncols, height * nrows),
        squeeze=False,
        constrained_layout=True,
    )
    return fig, axes


def simulation_band(
    ax, x, mean, se, *, label=None, color=None, z: float = 2.0, marker=None, **kwargs
):
    """Plots ``mean`` with a ± ``z``·SE band; returns the line's colour."""
    x, mean, se = (np.asarray(a, dtype=float) for a in (x, mean, se))
    (line,) = ax.plot(
        x, mean, label=label, color=color, marker=marker, lw=1.4, **kwargs
    )
    ax.fill_between(
        x, mean - z * se, mean + z * se, color=line.get_color(), alpha=0.25, lw=0
    )
    return line.get_color()


def theory_line(ax, x, y, *, label="theory", color="k", **kwargs):
    """Draws the prediction as a dashed line on top of the simulation."""
    kwargs.setdefault("ls", "--")
    kwargs.setdefault("lw", 1.2)
    ax.plot(
        np.asarray(x, dtype=float),
        np.asarray(y, dtype=float),
        color=color,
        label=label,
        zorder=5,
        **kwargs,
    )
