"""Theory-vs-simulation overlays: simulation mean ± SE band under the theory line.

Importing this module leaves matplotlib's backend alone: figures come from pyplot with
whatever backend the session chose (inline in a notebook, a window on a desktop, Agg
when no display exists, which matplotlib picks by itself), and :func:`png_bytes`
renders any of them to PNG without a screen.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import ticker

__all__ = [
    "MIN_LEGEND_FONTSIZE",
    "close",
    "figure",
    "finish",
    "integer_ticks",
    "legend",
    "png_bytes",
    "simulation_band",
    "theory_line",
    "theory_zero",
]

# Legends below 8 pt are unreadable in the gallery's downscaled figures.
MIN_LEGEND_FONTSIZE = 8.0


def figure(nrows: int = 1, ncols: int = 1, width: float = 4.2, height: float = 3.3):
    """A figure with an ``[nrows, ncols]`` grid of axes (always a 2-D array).

    Arguments follow ``matplotlib.pyplot.subplots``: rows first. ``width`` and
    ``height`` are per panel, in inches.
    """
    import matplotlib.pyplot as plt  # the backend is resolved here, never chosen

    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width * ncols, height * nrows),
        squeeze=False,
        constrained_layout=True,
    )
    return fig, axes


def _log_y(ax, log: bool | None) -> bool:
    return ax.get_yscale() == "log" if log is None else bool(log)


def simulation_band(
    ax,
    x,
    mean,
    se,
    *,
    label=None,
    color=None,
    z: float = 2.0,
    marker=None,
    log: bool | None = None,
    **kwargs,
):
    """Plots ``mean`` with a ± ``z``·SE band; returns the line's colour.

    ``x``, ``mean``, ``se``: ``[T]``. On a log y axis (``log=None`` reads the axis'
    current scale, so set the scale first) a band whose lower edge ``mean − z·SE``
    reaches 0 is clipped one decade below the curve's smallest positive mean, where
    it shows "consistent with 0" without stretching the axis towards 0; points with
    ``mean ≤ 0`` have no place on a log axis and are left out (a gap), not drawn at
    the axis floor.
    """
    x, mean, se = (np.asarray(a, dtype=float) for a in (x, mean, se))
    low, high = mean - z * se, mean + z * se
    if _log_y(ax, log):
        positive = mean > 0
        floor = 0.1 * np.min(mean[positive]) if positive.any() else np.nan
        mean = np.where(positive, mean, np.nan)
        low = np.where(positive, np.maximum(low, floor), np.nan)
        high = np.where(positive, high, np.nan)
    (line,) = ax.plot(
        x, mean, label=label, color=color, marker=marker, lw=1.4, **kwargs
    )
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25, lw=0)
    return line.get_color()


def theory_line(ax, x, y, *, label="theory", color="k", **kwargs):
    """Draws the prediction ``y`` (``[T]``) as a dashed line over the simulation.

    On a log y axis a prediction that is zero everywhere is drawn by
    :func:`theory_zero` instead (a line at 0 would be invisible, or drawn at the
    axis floor as if it were a small positive number).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if ax.get_yscale() == "log" and np.all(y <= 0):
        theory_zero(ax, color=color, label=None if label is None else f"{label} = 0")
        return
    kwargs.setdefault("ls", "--")
    kwargs.setdefault("lw", 1.2)
    ax.plot(x, y, color=color, label=label, zorder=5, **kwargs)


def theory_zero(
    ax, *, label="theory = 0 (below the log axis)", color="k", y=0.04, n: int = 5
):
    """Marks a prediction of exactly 0 on a log y axis: ``n`` arrows pointing down,
    evenly spaced along the bottom edge of the axes (``y`` in axes coordinates, so
    they neither move the data limits nor bunch up on a log or symlog x axis),
    labelled so the legend says where the theory lies."""
    ax.plot(
        (np.arange(n) + 0.5) / n,
        np.full(n, y),
        ls="none",
        marker="v",
        ms=7,
        color=color,
        label=label,
        transform=ax.transAxes,
        clip_on=False,
        zorder=6,
    )


def integer_ticks(ax, axis: str = "x") -> None:
    """Only integer tick positions on ``axis`` (``"x"``, ``"y"`` or ``"both"``):
    layers, depths and generations have no fractional values."""
    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis must be 'x', 'y' or 'both', got {axis!r}")
    if axis in ("x", "both"):
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if axis in ("y", "both"):
        ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def _floor(size) -> float:
    from matplotlib.font_manager import FontProperties

    points = FontProperties(size=size).get_size_in_points()
    return max(float(points), MIN_LEGEND_FONTSIZE)


def legend(ax, **kwargs):
    """``ax.legend(**kwargs)`` with ``fontsize`` and ``title_fontsize`` raised to at
    least :data:`MIN_LEGEND_FONTSIZE` points."""
    kwargs["fontsize"] = _floor(kwargs.get("fontsize", MIN_LEGEND_FONTSIZE))
    if "title_fontsize" in kwargs:
        kwargs["title_fontsize"] = _floor(kwargs["title_fontsize"])
    return ax.legend(**kwargs)


def _legends(fig):
    yield from fig.legends
    for ax in fig.axes:
        if ax.get_legend() is not None:
            yield ax.get_legend()


def finish(fig):
    """Raises every legend's text in ``fig`` to :data:`MIN_LEGEND_FONTSIZE` points;
    returns ``fig``. The gallery applies it to every figure it saves."""
    for leg in _legends(fig):
        texts = list(leg.get_texts()) + [leg.get_title()]
        for text in texts:
            if text.get_fontsize() < MIN_LEGEND_FONTSIZE:
                text.set_fontsize(MIN_LEGEND_FONTSIZE)
    return fig


def png_bytes(fig, *, dpi: int = 110) -> bytes:
    """``fig`` rendered to PNG (after :func:`finish`), whatever the backend."""
    buffer = io.BytesIO()
    finish(fig).savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def close(fig) -> None:
    """Releases ``fig`` (pyplot keeps every figure it made until closed)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
