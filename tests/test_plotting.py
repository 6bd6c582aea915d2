"""Figures: the plotting helpers and the gallery figures that used to mislead.

Figures are checked through their axes (labels, scales, ticks, legend entries, the data
of lines and bands), never through pixels. The experiments' ``plot`` functions are fed
hand-made arrays (no experiment runs here) shaped like their ``run`` output and built
to show each old fault: SE bands reaching 0 on log axes, theories equal to 0.
"""

import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from collapse_jax import plotting
from collapse_jax.report import Result

matplotlib.use("Agg")  # the tests draw off-screen (plotting itself never chooses)


@pytest.fixture
def ax():
    fig, axes = plotting.figure()
    yield axes[0, 0]
    plotting.close(fig)


def _band_y(ax):
    """y values of every filled band's outline on ``ax``."""
    ys = [
        path.vertices[:, 1]
        for coll in ax.collections
        if isinstance(coll, PolyCollection)
        for path in coll.get_paths()
    ]
    return np.concatenate(ys) if ys else np.zeros(0)


def _data_lines(ax):
    return [line for line in ax.get_lines() if line.get_transform() == ax.transData]


def _legend_texts(ax):
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def _visible_ticks(axis, limits):
    low, high = sorted(limits)
    ticks = np.asarray(axis.get_majorticklocs())
    return ticks[(ticks >= low) & (ticks <= high)]


def test_importing_plotting_leaves_the_matplotlib_backend_unchanged():
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "import collapse_jax.plotting; print(matplotlib.get_backend())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().lower() == "svg"


def test_figure_takes_rows_then_columns_like_matplotlib():
    fig, axes = plotting.figure(2, 3)
    assert axes.shape == (2, 3)
    plotting.close(fig)
    fig, axes = plotting.figure(ncols=3)  # keyword callers keep working
    assert axes.shape == (1, 3)
    plotting.close(fig)


def test_linear_band_is_mean_plus_minus_z_se(ax):
    mean, se = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3])
    plotting.simulation_band(ax, [0, 1, 2], mean, se, z=2.0)
    ys = _band_y(ax)
    assert np.isclose(ys.min(), (mean - 2 * se).min())
    assert np.isclose(ys.max(), (mean + 2 * se).max())


def test_log_axis_band_stays_positive_where_mean_minus_2se_is_negative(ax):
    ax.set_yscale("log")
    mean = np.array([1.0, 1e-3, 1e-6])
    se = mean  # mean − 2 SE < 0 at every point
    plotting.simulation_band(ax, [0, 1, 2], mean, se)
    ys = _band_y(ax)
    ys = ys[np.isfinite(ys)]
    assert ys.size and ys.min() > 0
    # clipped one decade below the smallest mean, not stretched towards 0
    assert ys.min() >= 0.1 * mean.min() * (1 - 1e-12)


def test_log_axis_leaves_nonpositive_means_out_instead_of_at_the_floor(ax):
    ax.set_yscale("log")
    plotting.simulation_band(ax, [0, 1, 2], [1.0, 0.0, 1e-3], [0.0, 0.0, 0.0])
    (line,) = _data_lines(ax)
    y = np.asarray(line.get_ydata(), dtype=float)
    assert np.isnan(y[1]) and np.all(y[[0, 2]] > 0)


def test_zero_theory_on_log_axis_is_a_labelled_marker_not_a_line(ax):
    ax.set_yscale("log")
    plotting.simulation_band(ax, [0, 1], [1.0, 0.1], [0.01, 0.01])
    plotting.theory_line(ax, [0, 1], [0.0, 0.0])
    plotting.legend(ax)
    assert len(_data_lines(ax)) == 1  # only the simulation lies in data coordinates
    assert any("= 0" in t for t in _legend_texts(ax))
    low, high = ax.get_ylim()
    assert low > 1e-3  # the marker does not drag the axis towards 0


def test_legend_font_size_has_a_floor(ax):
    ax.plot([0, 1], [0, 1], label="a")
    leg = plotting.legend(ax, fontsize=5, title="t", title_fontsize=4)
    sizes = [t.get_fontsize() for t in leg.get_texts()] + [leg.get_title().get_size()]
    assert min(sizes) >= plotting.MIN_LEGEND_FONTSIZE


def test_finish_raises_every_small_legend_in_a_figure():
    fig, axes = plotting.figure(1, 2)
    for ax in axes[0]:
        ax.plot([0, 1], [0, 1], label="a")
        ax.legend(fontsize=5)
    fig.legend(fontsize=6)
    plotting.finish(fig)
    for leg in [*fig.legends, *(ax.get_legend() for ax in axes[0])]:
        assert min(t.get_fontsize() for t in leg.get_texts()) >= 8
    assert plotting.png_bytes(fig).startswith(b"\x89PNG")
    plotting.close(fig)


def test_integer_ticks_on_a_short_layer_axis(ax):
    ax.plot([0, 1, 2], [0.5, 0.6, 0.7])
    plotting.integer_ticks(ax, "x")
    ticks = _visible_ticks(ax.xaxis, ax.get_xlim())
    assert ticks.size and np.allclose(ticks, np.round(ticks))
    with pytest.raises(ValueError, match="axis"):
        plotting.integer_ticks(ax, "z")


# -- the gallery figures ------------------------------------------------------------


def _plot(module, arrays):
    arrays = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
    return module.plot(Result(config={}, agreements={}, arrays=arrays))


def _check_labels_and_legends(fig):
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        legend = ax.get_legend()
        if legend is not None:
            sizes = [t.get_fontsize() for t in legend.get_texts()]
            assert min(sizes) >= plotting.MIN_LEGEND_FONTSIZE, ax.get_title()


def test_ufm_mse_figure_log_panels_have_positive_bands_and_no_theory_at_1e32():
    from collapse_jax.experiments import ufm_mse

    steps = np.arange(0, 1000, 100.0)
    decay = 10.0 ** -np.linspace(0, 30, steps.size)
    limits = {  # (no_bias, bias); 1e-32 is how the theory's rounding writes a 0
        "nc1": (0.0, 0.0),
        "nc2_w": (0.5, 0.0),
        "nc3": (0.3, 1e-32),
        "w_norm": (1.4, 1.2),
    }
    arrays = {}
    for i, label in enumerate(("no_bias", "bias")):
        arrays[f"{label}/steps"] = steps
        for name, limit in limits.items():
            mean = limit[i] + decay
            arrays[f"{label}/{name}/mean"] = mean
            arrays[f"{label}/{name}/se"] = decay  # mean − 2 SE < 0 where limit is 0
            arrays[f"{label}/{name}/theory"] = limit[i]
    fig = _plot(ufm_mse, arrays)
    _check_labels_and_legends(fig)
    log_axes = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(log_axes) == 2
    for ax in log_axes:
        ys = _band_y(ax)
        assert np.all(ys[np.isfinite(ys)] > 0), ax.get_title()
        for line in _data_lines(ax):
            if line.get_label().startswith("theory"):
                assert np.min(line.get_ydata()) > ufm_mse.ATOL, line.get_label()
        assert any("= 0" in t for t in _legend_texts(ax)), ax.get_title()
    plotting.close(fig)


def test_ufm_ce_figure_step_axes_start_at_zero_without_negative_ticks():
    from collapse_jax.experiments import ufm_ce

    steps = np.arange(0, 15_001, 100.0)
    decay = np.exp(-steps / 1000)
    arrays = {"steps": steps}
    for name, limit in (
        ("nc2_h", 0.0),
        ("nc2_w", 0.0),
        ("w_norm", 2.8),
        ("h_norm", 0.9),
        ("loss", 0.4),
    ):
        arrays[f"{name}/mean"] = limit + decay
        arrays[f"{name}/se"] = 0.01 * decay
        arrays[f"{name}/theory"] = limit
    fig = _plot(ufm_ce, arrays)
    _check_labels_and_legends(fig)
    for ax in fig.axes:
        assert ax.get_xlim()[0] >= 0
        assert np.all(_visible_ticks(ax.xaxis, ax.get_xlim()) >= 0), ax.get_title()
        if ax.get_yscale() == "log":  # the ETF distances: theory 0, marked
            assert any("= 0" in t for t in _legend_texts(ax))
    plotting.close(fig)


def test_deep_linear_ufm_figure_layer_axes_have_integer_ticks():
    from collapse_jax.experiments import deep_linear_ufm_nc_per_layer as exp

    steps = np.arange(0, 5001, 250.0)
    nc1 = 10.0 ** -np.linspace(0, 14, steps.size)[:, None] * np.ones(3)
    arrays = {"L3/steps": steps, "L3/nc1_mean": nc1, "L3/nc1_se": nc1}
    for depth in (1, 2, 3):
        arrays[f"L{depth}/norm_mean"] = 0.5 + 0.1 * np.arange(depth)
        arrays[f"L{depth}/norm_se"] = np.full(depth, 1e-3)
        arrays[f"L{depth}/norm_theory"] = 0.5 + 0.1 * np.arange(depth)
        arrays[f"L{depth}/etf_mean"] = np.full(depth, 2e-6)
        arrays[f"L{depth}/etf_se"] = np.full(depth, 1e-6)
    fig = _plot(exp, arrays)
    _check_labels_and_legends(fig)
    for ax in fig.axes[1:]:
        ticks = _visible_ticks(ax.xaxis, ax.get_xlim())
        assert ticks.size and np.allclose(ticks, np.round(ticks)), ax.get_title()
    nc1_ax = fig.axes[0]
    ys = _band_y(nc1_ax)
    assert np.all(ys[np.isfinite(ys)] > 0)
    plotting.close(fig)
