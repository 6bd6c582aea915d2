"""Runs split over 2 and 4 forced host devices: no hang at realistic sizes (UFM d=64,
K=10, whose NC1 calls a batched LAPACK eigendecomposition; a model that solves with a
batched LAPACK Cholesky every step), the same bits as one device for those, and a
small sweep equal to one device to rounding. Subprocesses with
a timeout: the device count is fixed at start-up, and a deadlock must fail the test."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("error", RuntimeWarning)  # the one-device fallback warns
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import struct
    import collapse_jax as cj
    from collapse_jax.models import ufm

    devices = int(sys.argv[1])
    assert jax.local_device_count() == devices, jax.devices()

    cfg = ufm.Config(num_classes=10, dim=64, per_class=50)
    split = cj.simulate(ufm, cfg, seeds=64, steps=20, every=20)
    alone = cj.simulate(ufm, cfg, seeds=64, steps=20, every=20, devices=1)
    for name in alone.metrics:
        np.testing.assert_array_equal(split[name], alone[name], err_msg=name)

    small = ufm.Config(num_classes=3, dim=4, per_class=3)
    grid = {"lr": [0.1, 0.15, 0.2]}
    swept = cj.sweep(ufm, small, grid, seeds=3, steps=10, every=10, block_size=2)
    swept1 = cj.sweep(ufm, small, grid, seeds=3, steps=10, every=10, block_size=2,
                      devices=1)  # fmt: skip
    for name in swept1.metrics:
        # Other blocks per device give the per-device program other buffer shapes;
        # XLA may round a fused reduction differently (seen: 2e-6 relative in
        # class_logits). float32 sums of <= 100 terms: <= 100 * 2^-23 ~ 1.2e-5.
        np.testing.assert_allclose(
            swept[name], swept1[name], rtol=1.2e-5, atol=1e-7, err_msg=name
        )

    class Ridge:  # solves (X'X/n + lam I) w = X'y with LAPACK's Cholesky each step
        @struct.dataclass
        class Config:
            lam: float = 0.1

        @staticmethod
        def init(key, cfg):
            return {"key": key, "w": jnp.zeros(64)}

        @staticmethod
        def step(state, cfg):
            key, sub = jax.random.split(state["key"])
            X = jax.random.normal(sub, (128, 64))
            y = X @ jnp.ones(64)
            A = X.T @ X / 128 + cfg.lam * jnp.eye(64)
            w = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(A), X.T @ y / 128)
            return {"key": key, "w": w}

        @staticmethod
        def observe(state, cfg):
            return {"w_norm": jnp.linalg.norm(state["w"])}

    ridge = cj.simulate(Ridge, Ridge.Config(), seeds=32, steps=10, every=5)
    ridge1 = cj.simulate(Ridge, Ridge.Config(), seeds=32, steps=10, every=5, devices=1)
    np.testing.assert_array_equal(ridge["w_norm"], ridge1["w_norm"])
    assert np.isfinite(ridge["w_norm"]).all()
    print("OK")
    """
)


@pytest.mark.parametrize("devices", [2, 4])
def test_runs_on_several_devices_finish_and_equal_one_device(devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    try:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(devices)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"simulate on {devices} host devices did not finish in 300 s: a deadlock "
            "(see collapse_jax._runtime.lapack_deadlocks_on_several_cpu_devices)"
        )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_affected_jaxlib_versions_are_recognised(monkeypatch):
    from collapse_jax import _runtime

    for version, affected in [
        ((0, 9, 0), False),
        ((0, 9, 1), True),
        ((0, 10, 2), True),
    ]:
        monkeypatch.setattr(_runtime, "jaxlib_version", lambda v=version: v)
        assert _runtime.lapack_deadlocks_on_several_cpu_devices() is affected
