"""The seed and grid axes sharded over 4 (forced host) devices give the same numbers as
one device, up to summation order (float64, rtol 1e-12: a partitioned batch may fuse
reductions differently). Runs in a subprocess: the device count is fixed at start-up."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax
    import numpy as np
    import collapse_jax as cj
    from collapse_jax.models import ufm

    jax.config.update("jax_enable_x64", True)
    assert jax.local_device_count() == 4, jax.devices()
    cfg = ufm.Config(num_classes=3, dim=4, per_class=3, lr=0.2, dtype="float64")
    sharded = cj.simulate(ufm, cfg, seeds=8, steps=100, every=20)
    single = cj.simulate(ufm, cfg, seeds=8, steps=100, every=20, devices=1)
    for name in single.metrics:
        np.testing.assert_allclose(sharded[name], single[name], rtol=1e-12, atol=1e-14)
    grid = {"lr": [0.1, 0.15, 0.2, 0.25]}
    swept = cj.sweep(ufm, cfg, grid, seeds=2, steps=60, every=20)
    swept1 = cj.sweep(ufm, cfg, grid, seeds=2, steps=60, every=20, devices=1)
    for name in swept1.metrics:
        np.testing.assert_allclose(swept[name], swept1[name], rtol=1e-12, atol=1e-14)
    odd = cj.simulate(ufm, cfg, seeds=3, steps=20, every=10)  # 3 seeds: unsharded
    try:
        cj.simulate(ufm, cfg, seeds=3, steps=20, every=10, devices=4)
    except ValueError as err:
        assert "do not divide" in str(err)
    else:
        raise AssertionError("expected a ValueError for 3 seeds on 4 devices")
    print("OK")
    """
)


def test_sharded_seeds_and_grid_equal_single_device_run():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout
