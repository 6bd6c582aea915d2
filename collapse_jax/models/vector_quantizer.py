"""Codebook learning with nearest-code assignment: vanilla VQ vs SimVQ.

Data ``x`` (``[N, d]``) from a uniform distribution on ``[0, 1]^d`` or an isotropic
Gaussian mixture; the encoder is the identity (``z = x``), so the dynamics are those
of the codebook alone. Each sample is assigned its nearest code ``q_{a(x)}`` and the
VQ-VAE losses (van den Oord et al. 2017, arXiv 1711.00937) are

  codebook   ‖sg(z) − q_a‖²        (moves the codes)
  commitment β ‖z − sg(q_a)‖²      (moves the encoder: zero gradient here)

averaged over a batch, minimised by SGD or Adam (optax). Codes are either free
parameters (``quantizer="vanilla"``) or, as in SimVQ (Zhu et al. 2024, "Addressing
representation collapse in vector quantized models with one linear layer", arXiv
2411.02038), ``q_k = W c_k + b`` with a frozen basis ``C`` (``[K, d]``) and a learned
linear layer ``W`` (``[d, d]``) with bias ``b`` (``[d]``).

SimVQ starts from exactly the vanilla codebook ``Q0`` of the same seed: with centroid
``q̄`` and per-dimension RMS radius ``ρ`` of ``Q0``, ``C = s (Q0 − q̄)/ρ`` (RMS norm per
dimension ``s = basis_scale``), ``W0 = (ρ/s) I``, ``b0 = q̄``. The scale ``s`` does not
change the initial codebook, only the geometry of learning (theory/vector_quantizer.md).

Training batches: fresh i.i.d. minibatches from the key in the State
(``sampling="minibatch"``), one fixed i.i.d. sample drawn at init (``"fixed"``, full
batch) or the deterministic grid ``(i + ½)/N`` of ``U[0, 1]`` (``"grid"``, 1-D uniform
only). The evaluation set that ``observe`` uses is drawn once at init (a grid of
``eval_samples`` points under ``"grid"``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from collapse_jax import random as cr
from collapse_jax._config import check_choice, check_dtype, check_int, check_range

__all__ = ["Config", "State", "codes", "init", "loss", "observe", "step"]


@struct.dataclass
class Config:
    """Sizes and choices are static; the float hyperparameters sweep."""

    num_codes: int = struct.field(pytree_node=False, default=16)
    dim: int = struct.field(pytree_node=False, default=1)
    data: str = struct.field(pytree_node=False, default="uniform")
    num_components: int = struct.field(pytree_node=False, default=4)
    quantizer: str = struct.field(pytree_node=False, default="vanilla")
    optimizer: str = struct.field(pytree_node=False, default="sgd")
    sampling: str = struct.field(pytree_node=False, default="minibatch")
    samples: int = struct.field(pytree_node=False, default=256)
    eval_samples: int = struct.field(pytree_node=False, default=1024)
    codebook_init: str = struct.field(pytree_node=False, default="uniform")
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.1
    beta: float = 0.25  # commitment weight: enters the loss, not the code gradients
    init_margin: float = 1.0  # "uniform" init: codes i.i.d. U[−a, 1 + a]^d
    init_offset: float = 2.0  # "ladder" init: q_k = (offset + k·spacing)·1_d
    init_spacing: float = 0.0625
    basis_scale: float = 1.0  # SimVQ: RMS of the frozen basis per dimension
    mixture_std: float = 0.05

    def __post_init__(self):
        check_int("num_codes", self.num_codes, 2)
        check_int("dim", self.dim, 1)
        check_choice("data", self.data, ("uniform", "mixture"))
        check_int("num_components", self.num_components, 1)
        check_choice("quantizer", self.quantizer, ("vanilla", "simvq"))
        check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        check_choice("sampling", self.sampling, ("minibatch", "fixed", "grid"))
        if self.sampling == "grid" and (self.data != "uniform" or self.dim != 1):
            raise ValueError(
                f"sampling='grid' is not allowed with data={self.data!r}, "
                f"dim={self.dim}: the grid is the 1-D uniform one (data='uniform', "
                "dim=1)"
            )
        check_int("samples", self.samples, 1)
        check_int("eval_samples", self.eval_samples, 1)
        check_choice("codebook_init", self.codebook_init, ("uniform", "ladder"))
        check_dtype("dtype", self.dtype)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("beta", self.beta, 0.0)
        check_range("init_margin", self.init_margin, 0.0)
        check_range("init_offset", self.init_offset)  # any finite value (not NaN)
        check_range("init_spacing", self.init_spacing, 0.0, low_open=True)
        check_range("basis_scale", self.basis_scale, 0.0, low_open=True)
        check_range("mixture_std", self.mixture_std, 0.0, low_open=True)


class State(NamedTuple):
    params: Any  # vanilla {"codes": [K, d]}; simvq {"W": [d, d], "b": [d]}
    opt_state: Any
    basis: jax.Array  # [K, d] frozen SimVQ basis C (vanilla: zeros, unused)
    init_codes: jax.Array  # [K, d] codebook at step 0
    train_x: jax.Array  # [samples, d] fixed/grid training set ([0, d] for minibatch)
    eval_x: jax.Array  # [eval_samples, d]
    hits: jax.Array  # [K] training assignments received so far (int32)
    key: jax.Array


def _grid(n, dtype):
    return ((jnp.arange(n, dtype=dtype) + 0.5) / n)[:, None]


def _sample(key, n, cfg: Config, dtype):
    """``[n, d]`` i.i.d. samples of the data distribution."""
    d = cfg.dim
    if cfg.data == "uniform":
        return cr.uniform(key, (n, d), dtype)
    k_comp, k_noise = jax.random.split(key)
    M = cfg.num_components
    comp = jax.random.randint(k_comp, (n,), 0, M)
    means = (comp.astype(dtype)[:, None] + 0.5) / M  # on the diagonal of [0, 1]^d
    noise = cr.normal(k_noise, (n, d), dtype)
    return means + jnp.asarray(cfg.mixture_std, dtype) * noise


def _optimizer(cfg: Config):
    if cfg.optimizer == "sgd":
        return optax.sgd(cfg.lr)
    return optax.adam(cfg.lr)


def codes(params, basis, cfg: Config) -> jax.Array:
    """``[K, d]`` codebook: the free codes, or SimVQ's ``q_k = W c_k + b``."""
    if cfg.quantizer == "vanilla":
        return params["codes"]
    return basis @ params["W"].T + params["b"][None, :]


def init(key: jax.Array, cfg: Config) -> State:
    dtype = jnp.dtype(cfg.dtype)
    K, d = cfg.num_codes, cfg.dim
    k_codes, k_train, k_eval, k_run = jax.random.split(key, 4)
    if cfg.codebook_init == "uniform":
        a = jnp.asarray(cfg.init_margin, dtype)
        Q0 = -a + (1 + 2 * a) * cr.uniform(k_codes, (K, d), dtype)
    else:
        ladder = cfg.init_offset + cfg.init_spacing * jnp.arange(K, dtype=dtype)
        Q0 = jnp.broadcast_to(ladder[:, None], (K, d)).astype(dtype)
    if cfg.quantizer == "vanilla":
        params = {"codes": Q0}
        basis = jnp.zeros((K, d), dtype)
    else:
        centre = jnp.mean(Q0, axis=0)
        rho = jnp.sqrt(jnp.mean((Q0 - centre[None, :]) ** 2))
        s = jnp.asarray(cfg.basis_scale, dtype)
        basis = s * (Q0 - centre[None, :]) / rho
        params = {"W": (rho / s) * jnp.eye(d, dtype=dtype), "b": centre}
    if cfg.sampling == "grid":
        train_x, eval_x = _grid(cfg.samples, dtype), _grid(cfg.eval_samples, dtype)
    else:
        eval_x = _sample(k_eval, cfg.eval_samples, cfg, dtype)
        n_train = cfg.samples if cfg.sampling == "fixed" else 0
        train_x = _sample(k_train, n_train, cfg, dtype)
    return State(
        params=params,
        opt_state=_optimizer(cfg).init(params),
        basis=basis,
        init_codes=codes(params, basis, cfg),
        train_x=train_x,
        eval_x=eval_x,
        hits=jnp.zeros((K,), jnp.int32),
        key=k_run,
    )


def _assign(x, q):
    """Nearest code of each sample ``[N]`` and the squared distances ``[N, K]``."""
    d2 = jnp.sum((x[:, None, :] - q[None, :, :]) ** 2, axis=-1)
    return jnp.argmin(d2, axis=1), d2


def loss(params, basis, x, cfg: Config) -> jax.Array:
    """Codebook + β·commitment loss on the batch ``x`` ``[N, d]`` (scalar)."""
    q = codes(params, basis, cfg)
    a, _ = _assign(x, jax.lax.stop_gradient(q))
    qa = q[a]  # gather: codes no sample picks get exactly zero gradient
    codebook = jnp.mean(jnp.sum((jax.lax.stop_gradient(x) - qa) ** 2, axis=-1))
    commitment = jnp.mean(jnp.sum((x - jax.lax.stop_gradient(qa)) ** 2, axis=-1))
    return codebook + cfg.beta * commitment


def step(state: State, cfg: Config) -> State:
    """One optimiser step on a minibatch (or on the fixed training set)."""
    key, k_batch = jax.random.split(state.key)
    if cfg.sampling == "minibatch":
        x = _sample(k_batch, cfg.samples, cfg, state.eval_x.dtype)
    else:
        x = state.train_x
    a, _ = _assign(x, codes(state.params, state.basis, cfg))
    grads = jax.grad(loss)(state.params, state.basis, x, cfg)
    updates, opt_state = _optimizer(cfg).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    hits = state.hits + jnp.zeros_like(state.hits).at[a].add(1)
    return state._replace(params=params, opt_state=opt_state, hits=hits, key=key)


def observe(state: State, cfg: Config) -> dict[str, jax.Array]:
    """Metrics on the evaluation set (scalars unless stated).

    ``live_codes``: codes nearest to at least one evaluation sample; ``utilisation``:
    live / K; ``perplexity``: exp of the entropy of the code-usage frequencies;
    ``mse``: mean ``‖x − q_a(x)‖²``; ``loss``: codebook + β·commitment;
    ``displacement`` ``[K]``: ``‖q_k − q_k(0)‖`` per code.
    """
    q = codes(state.params, state.basis, cfg)
    x = state.eval_x
    dtype = x.dtype
    a, d2 = _assign(x, q)
    counts = jnp.zeros((cfg.num_codes,), dtype).at[a].add(1)
    p = counts / x.shape[0]
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0))
    live = jnp.sum(counts > 0).astype(dtype)
    mse = jnp.mean(jnp.min(d2, axis=1))
    return {
        "live_codes": live,
        "utilisation": live / cfg.num_codes,
        "perplexity": jnp.exp(entropy),
        "mse": mse,
        "loss": loss(state.params, state.basis, x, cfg),
        "displacement": jnp.sqrt(jnp.sum((q - state.init_codes) ** 2, axis=-1)),
    }
