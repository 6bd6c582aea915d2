"""Simulation vs theory: per-metric error and pass/fail against a seed-SE tolerance."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from collapse_jax.trajectory import Trajectory, format_grid_point, grid_point

__all__ = ["Agreement", "MetricAgreement", "compare"]


@dataclasses.dataclass(frozen=True)
class MetricAgreement:
    """How one metric's simulation mean compares with its prediction.

    ``tolerance = z * se + atol + rtol * |theory|`` elementwise (infinite where the
    prediction is NaN, i.e. the theory says nothing there; with a single finite seed
    there is no standard error and the tolerance is ``atol + rtol * |theory|``); the
    metric passes when ``|mean - theory| <= tolerance`` at every compared point
    (every grid point, record and component), and fails where no seed stayed finite.
    ``worst`` is the largest ``|error| / tolerance``. For a sweep, ``grid`` holds the
    ``[G]`` values of each swept field (the leading axis of the arrays).
    """

    metric: str
    at: str  # "trajectory" (every record) or "final" (last record)
    mean: np.ndarray
    se: np.ndarray
    theory: np.ndarray
    error: np.ndarray
    tolerance: np.ndarray
    n_seeds: int
    z: float
    atol: float
    rtol: float
    grid: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(np.all(self._ok()))

    def _ok(self) -> np.ndarray:
        return np.abs(self.error) <= self.tolerance  # False where the mean is NaN

    def _ratio(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(self.error) / self.tolerance
        return np.where(self.error == 0, 0.0, ratio)

    def failed_points(self) -> list[str]:
        """The grid points (by their values, ``"lr=0.1, lambda_w=0.01"``) where this
        metric fails; for a simulation, ``["all"]`` if it fails at all."""
        if not self.grid:
            return [] if self.passed else ["all"]
        size = len(next(iter(self.grid.values())))
        bad = ~self._ok().reshape(size, -1).all(axis=1)
        return [self.point(g) for g in np.flatnonzero(bad)]

    def point(self, g: int) -> str:
        """Grid point ``g`` named by its values."""
        return format_grid_point(grid_point(self.grid, g))

    @property
    def worst_point(self) -> str | None:
        """The grid point of the largest ``|error| / tolerance`` (None: no grid)."""
        if not self.grid:
            return None
        size = len(next(iter(self.grid.values())))
        ratio = np.nan_to_num(self._ratio(), nan=np.inf).reshape(size, -1)
        return self.point(int(np.argmax(ratio.max(axis=1))))

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.error)))

    @property
    def worst(self) -> float:
        return float(np.max(self._ratio()))

    def summary(self) -> dict[str, Any]:
        """JSON-ready digest (scalars only)."""
        return {
            "metric": self.metric,
            "at": self.at,
            "max_abs_error": self.max_abs_error,
            "max_theory": float(np.nanmax(np.abs(self.theory))),
            "max_tolerance": _finite_max(self.tolerance),
            "worst_error_over_tolerance": self.worst,
            "n_seeds": self.n_seeds,
            "z": self.z,
            "atol": self.atol,
            "rtol": self.rtol,
            "passed": self.passed,
            "worst_grid_point": self.worst_point,
            "failed_grid_points": self.failed_points() if self.grid else [],
        }


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Per-metric agreements; ``passed`` when every metric passes."""

    metrics: dict[str, MetricAgreement]

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.metrics.values())

    def __getitem__(self, name: str) -> MetricAgreement:
        return self.metrics[name]

    def summary(self) -> list[dict[str, Any]]:
        return [m.summary() for m in self.metrics.values()]

    def table(self) -> str:
        """A plain-text table: metric, max |error|, max tolerance, worst ratio (and, for
        a sweep, the grid point where it is worst), verdict; then, for a sweep, the
        grid points where each failing metric fails."""
        sweep = any(m.grid for m in self.metrics.values())
        head = ("metric", "at", "max |err|", "max tol", "err/tol", "seeds", "ok")
        rows = [head + (("worst at",) if sweep else ())]
        for m in self.metrics.values():
            row = (
                m.metric,
                m.at,
                f"{m.max_abs_error:.3g}",
                f"{m.summary()['max_tolerance']:.3g}",
                f"{m.worst:.2f}",
                str(m.n_seeds),
                "pass" if m.passed else "FAIL",
            )
            rows.append(row + ((m.worst_point or "",) if sweep else ()))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        for m in self.metrics.values():
            if m.grid and not m.passed:
                points = m.failed_points()
                shown = "; ".join(points[:5])
                more = f"; and {len(points) - 5} more" if len(points) > 5 else ""
                lines.append(f"{m.metric} fails at {shown}{more}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _finite_max(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.max()) if finite.size else float("nan")


def _per_metric(value, name, default):
    if isinstance(value, Mapping):
        return float(value.get(name, default))
    return float(value)


def compare(
    trajectory: Trajectory,
    prediction: Mapping[str, Any],
    *,
    z: float = 4.0,
    atol: float | Mapping[str, float] = 0.0,
    rtol: float | Mapping[str, float] = 0.0,
    at: str | None = None,
) -> Agreement:
    """Compares the seed mean of each predicted metric with its prediction.

    Args:
      trajectory: from ``simulate`` or ``sweep``.
      prediction: metric name -> array. Time-resolved predictions have the shape of
        ``trajectory.mean(name)`` (``[(G,) T, *metric_shape]``); limits have that
        shape without ``T`` and are compared at the last record.
      z: how many standard errors of the seed mean the error may reach.
      atol, rtol: a stated floor added to the tolerance (scalar or per metric), for
        deterministic runs (one seed, SE = 0) or a stated discretisation bound.
      at: force "trajectory" or "final" when shapes are ambiguous.

    Returns:
      An ``Agreement``; diverged seeds are left out of the mean and the SE.
    """
    if z < 0:
        raise ValueError(f"z={z} must be >= 0")
    if at not in (None, "trajectory", "final"):
        raise ValueError(f"at={at!r}: choose 'trajectory', 'final' or None")
    time_axis = 1 if trajectory.is_sweep else 0
    n_seeds = int(np.min(np.sum(trajectory.finite, axis=-1)))
    out = {}
    for name, theory in prediction.items():
        if name not in trajectory.metrics:
            raise KeyError(
                f"prediction names {name!r}, which the trajectory does not record "
                f"(it has {sorted(trajectory.metrics)})"
            )
        theory = np.asarray(theory, dtype=np.float64)
        mean, se = trajectory.mean(name), trajectory.se(name)
        se = np.where(trajectory.count(name) == 1, 0.0, se)  # one seed: no SE
        final_shape = mean.shape[:time_axis] + mean.shape[time_axis + 1 :]
        fits_traj = theory.shape == mean.shape
        fits_final = theory.shape == final_shape
        mode = at
        if mode is None:
            if fits_traj and fits_final:
                raise ValueError(
                    f"{name}: prediction shape {theory.shape} fits both a trajectory "
                    "and a final value; pass at='trajectory' or at='final'"
                )
            mode = "trajectory" if fits_traj else "final" if fits_final else None
        if mode == "final":
            mean = np.take(mean, -1, axis=time_axis)
            se = np.take(se, -1, axis=time_axis)
        if mode is None or theory.shape != mean.shape:
            raise ValueError(
                f"{name}: prediction shape {theory.shape} matches neither the "
                f"trajectory {trajectory.mean(name).shape} nor its last record "
                f"{final_shape}"
            )
        a, r = _per_metric(atol, name, 0.0), _per_metric(rtol, name, 0.0)
        # NaN in a prediction means "no prediction here": that point always passes.
        no_prediction = np.isnan(theory)
        tolerance = np.where(no_prediction, np.inf, z * se + a + r * np.abs(theory))
        if np.all(no_prediction):
            raise ValueError(f"{name}: the prediction is NaN everywhere")
        out[name] = MetricAgreement(
            metric=name,
            at=mode,
            mean=mean,
            se=se,
            theory=theory,
            error=np.where(no_prediction, 0.0, mean - theory),
            tolerance=tolerance,
            n_seeds=n_seeds,
            z=z,
            atol=a,
            rtol=r,
            grid=dict(trajectory.grid),
        )
    if not out:
        raise ValueError("prediction is empty")
    return Agreement(out)
