"""Two processes on localhost with ``jax.distributed`` (CPU collectives over gloo), each
running its own seed ids: the gathered trajectory equals one process running them all,
bit for bit. Subprocesses with a timeout, so a hang fails instead of stalling."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    process_id, port = int(sys.argv[1]), int(sys.argv[2])
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2,
        process_id=process_id, initialization_timeout=60,
    )
    import numpy as np
    import collapse_jax as cj
    from collapse_jax.models import ufm

    assert jax.process_count() == 2 and jax.process_index() == process_id
    cfg = ufm.Config(num_classes=3, dim=8, per_class=4, lr=0.2)
    mine = cj.process_seeds(5)  # 0..2 on process 0, 3..4 on process 1
    part = cj.simulate(ufm, cfg, seeds=mine, steps=40, every=10)
    union = cj.gather_processes(part)
    alone = cj.simulate(ufm, cfg, seeds=5, steps=40, every=10)
    np.testing.assert_array_equal(union.seeds, np.arange(5))
    for name in alone.metrics:
        np.testing.assert_array_equal(union[name], alone[name], err_msg=name)
    grid = {"lr": [0.1, 1e4]}  # the second point diverges on every seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cj.DivergenceWarning)
        part = cj.sweep(ufm, cfg, grid, seeds=mine, steps=20, every=10)
        swept_alone = cj.sweep(ufm, cfg, grid, seeds=5, steps=20, every=10)
    swept = cj.gather_processes(part)
    for name in swept_alone.metrics:
        np.testing.assert_array_equal(swept[name], swept_alone[name], err_msg=name)
    def named(divergences):
        return sorted((d.seed, d.step, d.metric, d.grid_index, str(d.grid))
                      for d in divergences)  # fmt: skip
    assert len(swept_alone.divergences) == 5
    assert named(swept.divergences) == named(swept_alone.divergences)
    assert all(d.grid == {"lr": 1e4} for d in swept.divergences)
    print(f"OK process {process_id}: seeds {mine.tolist()}")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_gather_to_the_single_process_run():
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", COLLAPSE_JAX_CPU_DEVICES="1")
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(i), str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=240))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("two-process run did not finish in 240 s (a collective hung)")
    for i, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i} failed:\n{err[-3000:]}"
        assert f"OK process {i}" in out
