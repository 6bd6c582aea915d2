"""Per-feature learning dynamics of deep linear JEPA and MAE.

Littwin et al. 2024 (arXiv 2407.03475), Sec. 3: with diagonal statistics and a
balanced, aligned, small initialisation, every feature ``i`` evolves on its own. With
per-layer amplitude ``a`` of the ``L`` encoder layers and head ``h`` (predictor or
decoder), the conserved ``a² − h²`` is 0 at ``a₀ = h₀ = ε``, so ``a = h`` and
(derivation in theory/linear_jepa.md, ``t = lr · step``)

  JEPA: ḣ = (λ/ρ) h^{2L} (ρ − h),          encoder w = h^L → ρ^L
  MAE:  ḣ = (λ/ρ) h^{L} (ρ − h^{L+1}),     encoder w = h^L → ρ^{L/(L+1)}

For small ``ε`` the JEPA critical time is
``t* ≈ (1/λ) Σ_{n=0}^{2L−2} 1/((2L−1−n) ρ^n ε^{2L−1−n})`` (series in ``h/ρ``), whose
lower-order terms favour large ``ρ``; MAE's is set by ``λ`` and, through
``Σ_xx = λ/ρ``, is slower for large ``ρ``. This is the paper's result that JEPA
prioritises influential (high-``ρ``) features and MAE covarying (high-``λ``) ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax.models.linear_jepa import Config
from collapse_jax.theory._ode import rk4_at_steps

__all__ = ["critical_time", "final_encoder", "feature_trajectories", "predict"]

_SUBSTEPS = 4  # RK4 substeps per training step


def _stats(cfg: Config):
    return jnp.asarray(cfg.lam), jnp.asarray(cfg.rho)


def _rhs(h, cfg: Config):
    lam, rho = (jnp.broadcast_to(v, h.shape) for v in _stats(cfg))
    L = cfg.depth
    if cfg.objective == "jepa":
        return (lam / rho) * h ** (2 * L) * (rho - h)
    return (lam / rho) * h**L * (rho - h ** (L + 1))


def final_encoder(cfg: Config) -> jax.Array:
    """``[d]`` encoder gain at convergence: JEPA ``ρ^L``, MAE ``ρ^{L/(L+1)}``.

    Fixed points of the per-feature ODEs (theory/linear_jepa.md), with ``a = h``;
    Littwin et al. 2024 (arXiv 2407.03475), Sec. 3."""
    _, rho = _stats(cfg)
    L = cfg.depth
    if cfg.objective == "jepa":
        return rho**L
    return rho ** (L / (L + 1))


def critical_time(cfg: Config, fraction: float = 0.5) -> jax.Array:
    """``[d]`` time ``t = lr · step`` at which the encoder gain ``h^L`` reaches
    ``fraction`` of its final value, by quadrature of ``dt = dh / ḣ`` (exact for the
    per-feature ODE; theory/linear_jepa.md). Littwin et al. 2024 (arXiv 2407.03475)
    give the small-``ε`` expansion of the JEPA critical time (Sec. 3)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} is out of range: allowed (0, 1)")
    h_end = (fraction * final_encoder(cfg)) ** (1.0 / cfg.depth)
    h0 = jnp.asarray(cfg.init_scale, dtype=h_end.dtype)
    if not isinstance(h0, jax.core.Tracer) and np.any(np.asarray(h_end) <= h0):
        raise ValueError(
            f"init_scale={cfg.init_scale}: a feature starts above {fraction} of its "
            "final gain; the critical time needs init_scale below it"
        )
    # Substitute h = h0 · (h_end/h0)^x, x in [0, 1]: smooth integrand for a log grid.
    x = jnp.linspace(0.0, 1.0, 4001)
    ratio = (h_end / h0)[None, :]
    h = h0 * ratio ** x[:, None]
    integrand = h * jnp.log(ratio) / _rhs(h, cfg)
    dx = jnp.diff(x)[:, None]
    return jnp.sum(0.5 * (integrand[1:] + integrand[:-1]) * dx, axis=0)


def feature_trajectories(cfg: Config, t) -> dict[str, jax.Array]:
    """RK4 solution at step indices ``t`` (concrete): ``head = h``,
    ``encoder = h^L``, ``readout = h^{L+1}``, each ``[*t.shape, d]``."""
    lam, _ = _stats(cfg)
    h0 = jnp.full(lam.shape, cfg.init_scale, dtype=lam.dtype)
    h = rk4_at_steps(lambda h: _rhs(h, cfg), h0, t, cfg.lr, _SUBSTEPS)
    L = cfg.depth
    return {"head": h, "encoder": h**L, "readout": h ** (L + 1)}


def predict(cfg: Config, t=None) -> dict[str, jax.Array]:
    """Trajectories of ``head``, ``encoder`` and ``readout``, ``[*t.shape, d]``.

    ``t=None``: their limits ``[d]`` at the fixed point ``final_encoder``."""
    if t is None:
        encoder = final_encoder(cfg)
        head = encoder ** (1.0 / cfg.depth)
        return {"head": head, "encoder": encoder, "readout": head ** (cfg.depth + 1)}
    return feature_trajectories(cfg, t)
