"""Metrics: pure functions of arrays and labels, usable on any model's outputs."""

from collapse_jax.metrics.neural_collapse import (
    between_class_covariance,
    cdnv,
    class_means,
    equiangularity,
    equinorm,
    etf_gram,
    max_angle_deviation,
    nc1,
    nc2_etf_distance,
    nc2_orthogonal_distance,
    nc3_self_duality,
    nc4_ncc_mismatch,
    within_class_covariance,
)

__all__ = [
    "between_class_covariance",
    "cdnv",
    "class_means",
    "equiangularity",
    "equinorm",
    "etf_gram",
    "max_angle_deviation",
    "nc1",
    "nc2_etf_distance",
    "nc2_orthogonal_distance",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
    "within_class_covariance",
]
