"""Checkpoint and resume: a run killed with SIGKILL resumes to the same bits."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.models import ufm

# The engine module (``collapse_jax.simulate`` the attribute is the function).
simulate_module = sys.modules["collapse_jax.simulate"]

# The Config of tests/test_engine.py; chunks of 4 records, as there, so the two files
# share their compiled programs when they run in one process.
CFG = ufm.Config(num_classes=3, dim=4, per_class=3, lr=0.2)
RUN = dict(seeds=3, steps=2400, every=10, chunk=40)

SCRIPT = textwrap.dedent(
    """
    import sys
    import collapse_jax as cj
    from collapse_jax.models import ufm
    cfg = ufm.Config(num_classes=3, dim=4, per_class=3, lr=0.2)
    cj.simulate(ufm, cfg, seeds=3, steps=2400, every=10, chunk=40,
                checkpoint_dir=sys.argv[1])
    """
)


def _chunks(directory):
    if not os.path.isdir(directory):
        return []
    # Complete chunks only; a save cut by the kill leaves an orbax temporary directory.
    return [n for n in os.listdir(directory) if re.fullmatch(r"chunk_\d{8}", n)]


@pytest.mark.slow
def test_sigkilled_run_resumes_bitwise_identical(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, ckpt])
    deadline = time.time() + 120
    while not _chunks(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # let it get mid-way through later chunks
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = max(int(n.split("_")[1]) for n in _chunks(ckpt))
    assert 0 < done < RUN["steps"] // RUN["every"]
    resumed = cj.simulate(ufm, CFG, **RUN, checkpoint_dir=ckpt)
    fresh = cj.simulate(ufm, CFG, **RUN)
    for name in fresh.metrics:
        np.testing.assert_array_equal(resumed[name], fresh[name], err_msg=name)


def test_resume_within_one_process_is_bitwise_identical(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    run = dict(seeds=2, steps=200, every=10, chunk=40)
    first = cj.simulate(ufm, CFG, **run, checkpoint_dir=ckpt)
    assert _chunks(ckpt) == ["chunk_00000020"]  # only the newest chunk is kept
    again = cj.simulate(ufm, CFG, **run, checkpoint_dir=ckpt)  # resumes at the end
    fresh = cj.simulate(ufm, CFG, **run)
    for name in fresh.metrics:
        np.testing.assert_array_equal(first[name], fresh[name])
        np.testing.assert_array_equal(again[name], fresh[name])


def test_checkpoint_of_a_different_run_is_refused(tmp_path, monkeypatch):
    ckpt = str(tmp_path / "ckpt")
    cj.simulate(ufm, CFG, seeds=2, steps=80, every=10, chunk=40, checkpoint_dir=ckpt)

    def compiled(*args):
        raise AssertionError("the mismatch must be found before the start program")

    # Refused before anything compiles or runs.
    monkeypatch.setattr(simulate_module, "_place", compiled)
    with pytest.raises(
        ValueError, match=r"different run \(checkpoint vs this run: lr: 0.2 vs 0.3\)"
    ):
        cj.simulate(
            ufm,
            CFG.replace(lr=0.3),
            seeds=2,
            steps=80,
            every=10,
            chunk=40,
            checkpoint_dir=ckpt,
        )
    with pytest.raises(ValueError, match=r"seeds: \[0, 1\] vs \[0, 1, 2\]\)"):
        cj.simulate(
            ufm, CFG, seeds=3, steps=80, every=10, chunk=40, checkpoint_dir=ckpt
        )


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    ckpt = tmp_path / "ckpt"
    cj.simulate(
        ufm, CFG, seeds=2, steps=80, every=10, chunk=40, checkpoint_dir=str(ckpt)
    )
    (chunk,) = _chunks(ckpt)
    for root, _, files in os.walk(ckpt / chunk):
        for f in files:
            with open(os.path.join(root, f), "wb") as handle:
                handle.write(b"garbage")
    with pytest.raises(ValueError, match="could not be restored"):
        cj.simulate(
            ufm, CFG, seeds=2, steps=80, every=10, chunk=40, checkpoint_dir=str(ckpt)
        )
    (ckpt / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        cj.simulate(
            ufm, CFG, seeds=2, steps=80, every=10, chunk=40, checkpoint_dir=str(ckpt)
        )
