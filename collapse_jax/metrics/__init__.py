"""Metrics: pure functions of arrays and labels, usable on any model's outputs.

``neural_collapse``: NC1–NC5, CDNV and their variants on arrays in memory;
``streaming``: the same metrics from per-class statistics accumulated batch by batch;
``spectral``: spectra and effective ranks of embeddings.
"""

from collapse_jax.metrics import streaming
from collapse_jax.metrics.neural_collapse import (
    Moments,
    between_class_covariance,
    cdnv,
    cdnv_matrix,
    centred_class_means,
    check_features_labels,
    class_means,
    class_variances,
    equiangularity,
    equinorm,
    etf_gram,
    etf_hyperspherical_energy,
    gnc2_hyperspherical_energy,
    max_angle_deviation,
    nc1,
    nc1_top_eigen,
    nc1_trace_quotient,
    nc2_etf_distance,
    nc2_orthogonal_distance,
    nc3_self_duality,
    nc4_ncc_mismatch,
    nc4_per_class,
    nc5_ood_orthogonality,
    self_duality_etf_distance,
    within_class_covariance,
)

__all__ = [
    "Moments",
    "between_class_covariance",
    "cdnv",
    "cdnv_matrix",
    "centred_class_means",
    "check_features_labels",
    "class_means",
    "class_variances",
    "equiangularity",
    "equinorm",
    "etf_gram",
    "etf_hyperspherical_energy",
    "gnc2_hyperspherical_energy",
    "max_angle_deviation",
    "nc1",
    "nc1_top_eigen",
    "nc1_trace_quotient",
    "nc2_etf_distance",
    "nc2_orthogonal_distance",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
    "nc4_per_class",
    "nc5_ood_orthogonality",
    "self_duality_etf_distance",
    "streaming",
    "within_class_covariance",
]
