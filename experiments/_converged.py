"""Tolerances for limits reached by a converged deterministic optimiser."""

from __future__ import annotations


def converged_atol(prediction, atol: float, grad_tol: float) -> dict[str, float]:
    """``atol`` for every predicted limit and ``grad_tol`` on ``grad_norm``.

    The gradient norm is predicted to be 0, so the agreement itself certifies the
    convergence that the ``atol`` argument (‖θ − θ*‖ ≤ ‖∇f‖/μ) rests on.
    """
    return {name: grad_tol if name == "grad_norm" else atol for name in prediction}
