"""The command line as a researcher uses it: errors before work, one line each; runs,
sweeps and saved files summarised and compared with theory; models and experiments
from a user's own package.

Runs use one tiny model from a temporary package (online SGD of a 3-d linear student)
with the same sizes (16 seeds, 20 steps recorded every step, one chunk), so they share
their compiled programs and the whole file compiles a handful of small ones.
"""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from collapse_jax import _checkpoint, cli, report
from collapse_jax.trajectory import Trajectory

PKG = "cjcli_toys"
TINY_UFM = ["--set", "num_classes=3", "--set", "dim=4", "--set", "per_class=2"]
RUN = ["--seeds", "16", "--steps", "20"]  # every defaults to 1: one shared program

MODEL = '''
"""Online SGD of a linear student on a noisy linear teacher."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from collapse_jax._config import check_choice, check_int, check_range


@struct.dataclass
class Config:
    dim: int = struct.field(pytree_node=False, default=3)
    batch: int = struct.field(pytree_node=False, default=2)
    dtype: str = struct.field(pytree_node=False, default="float32")
    lr: float = 0.1
    noise: float = 0.5

    def __post_init__(self):
        check_int("dim", self.dim, 1)
        check_int("batch", self.batch, 1)
        check_choice("dtype", self.dtype, ("float32", "float64"))
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("noise", self.noise, 0.0)


class State(NamedTuple):
    w: jax.Array
    teacher: jax.Array
    key: jax.Array


def init(key, cfg):
    k, key = jax.random.split(key)
    teacher = jax.random.normal(k, (cfg.dim,), cfg.dtype)
    return State(jnp.zeros(cfg.dim, cfg.dtype), teacher, key)


def step(state, cfg):
    key, kx, kn = jax.random.split(state.key, 3)
    x = jax.random.normal(kx, (cfg.batch, cfg.dim), cfg.dtype)
    y = x @ state.teacher + cfg.noise * jax.random.normal(kn, (cfg.batch,), cfg.dtype)
    grad = x.T @ (x @ state.w - y) / cfg.batch
    return State(state.w - cfg.lr * grad, state.teacher, key)


def observe(state, cfg):
    return {"error": jnp.sum((state.w - state.teacher) ** 2), "w": state.w}
'''

# E e_{t+1} = a E e_t + b for e = |w - w*|^2 with Gaussian inputs (fourth moments
# E[(x.v)^2 |x|^2] = (d + 2)|v|^2), e_0 = E|w*|^2 = d: exact in expectation.
THEORY = """
import jax.numpy as jnp

NOISE = None  # a number: the formula at this noise, whatever the config says


def predict(cfg, t=None):
    noise = cfg.noise if NOISE is None else NOISE
    a = (1 - cfg.lr) ** 2 + cfg.lr**2 * (cfg.dim + 1) / cfg.batch
    b = cfg.lr**2 * noise**2 * cfg.dim / cfg.batch
    e_inf = b / (1 - a)
    return {"error": a ** jnp.asarray(t) * (cfg.dim - e_inf) + e_inf}
"""

EXPERIMENT = f"""
import collapse_jax as cj
from collapse_jax import plotting
from collapse_jax.report import Result
from {PKG}.models import walk
from {PKG}.theory import walk as theory

TITLE = "Online SGD on a noisy linear teacher: error against the closed form."


def run(quick=True):
    cfg = walk.Config()
    tr = cj.simulate(walk, cfg, seeds=16, steps=20, every=1)
    p = theory.predict(cfg, tr.steps)
    arrays = dict(steps=tr.steps, mean=tr.mean("error"), se=tr.se("error"),
                  theory=p["error"])
    return Result(config=cj.config_to_dict(cfg), arrays=arrays,
                  agreements={{"sgd": cj.compare(tr, p, z=4)}})


def plot(result):
    fig, axes = plotting.figure()
    a = result.arrays
    plotting.simulation_band(axes[0, 0], a["steps"], a["mean"], a["se"], label="sim")
    plotting.theory_line(axes[0, 0], a["steps"], a["theory"])
    return fig
"""

ENTRY_POINTS = f"""
[collapse_jax.models]
walkplugin = {PKG}.models.walk

[collapse_jax.experiments]
walkplugin_exp = {PKG}.experiments.walk_exp
"""


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    """A user's package outside collapse_jax, importable here and in subprocesses,
    installed with entry points (a dist-info folder on the path)."""
    root = tmp_path_factory.mktemp("userpkg")
    files = {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/walk.py": MODEL,
        "theory/__init__.py": "",
        "theory/walk.py": THEORY,
        "theory/walk_wrong_noise.py": THEORY.replace("NOISE = None", "NOISE = 0.5"),
        "experiments/__init__.py": "",
        "experiments/walk_exp.py": EXPERIMENT,
    }
    for name, text in files.items():
        path = root / PKG / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = root / f"{PKG}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PKG}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        yield root


@pytest.fixture(autouse=True, scope="module")
def _no_compilation_cache():
    # main() turns the persistent cache on; the suite keeps it off (see conftest).
    # Module scope: the module-scoped fixtures below call main() too, before any
    # function-scoped fixture exists.
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("COLLAPSE_JAX_COMPILATION_CACHE", "").strip():
            mp.setenv("COLLAPSE_JAX_COMPILATION_CACHE", "0")
        yield


def cj(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``collapse-jax ARGV`` run in this process."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, strip_bars(err)


def _main_stdout(argv):
    """``(exit code, stdout)`` for module-scoped fixtures (capsys is per test)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(argv)
    return code, buffer.getvalue()


def strip_bars(err: str) -> str:
    """stderr without tqdm's progress-bar redraws."""
    lines = re.split(r"[\r\n]", err)
    return "\n".join(x for x in lines if x.strip() and "step/s" not in x)


def assert_one_line_error(code, out, err, *words):
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def subprocess_env(toys):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(toys), *sys.path]))
    env.setdefault("COLLAPSE_JAX_COMPILATION_CACHE", "0")
    env["COLLAPSE_JAX_CPU_DEVICES"] = "1"
    return env


@pytest.fixture
def readonly_dir(tmp_path):
    """A directory this process cannot write in (root writes anywhere but sysfs)."""
    if os.geteuid() == 0:
        return "/sys"
    path = tmp_path / "ro"
    path.mkdir()
    path.chmod(0o555)
    return str(path)


# --------------------------------------------------------------------- before the run


def test_unwritable_or_file_out_fails_in_one_line_before_simulating(
    capsys, tmp_path, readonly_dir
):
    afile = tmp_path / "afile"
    afile.write_text("")
    for out, words in ((readonly_dir, ("cannot write", readonly_dir)),
                       (afile, ("is a file",))):  # fmt: skip
        code, stdout, err = cj(capsys, "run", "ufm", *TINY_UFM, "--out", out)
        assert_one_line_error(code, stdout, err, "--out", *words)
        assert stdout == ""  # nothing was simulated
    code, stdout, err = cj(
        capsys, "reproduce", "ufm_mse", "--quick", "--out", readonly_dir
    )
    assert_one_line_error(code, stdout, err, "cannot write")
    assert "running" not in stdout


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "no_such_model"], ["unknown model", "ufm", "mypkg.models.foo"]),
        (["run", "no_such_pkg.models.x"], ["no module named", "no_such_pkg"]),
        (["run", "ufm", "--steps", "5", "--every", "10"], ["--every 10", "1, 5"]),
        (["run", "ufm", "--seeds", "0"], ["--seeds", ">= 1"]),
        (["run", "ufm", "--steps", "-3"], ["--steps", ">= 1"]),
        (["run", "ufm", "--every", "0"], ["--every", ">= 1"]),
        (["run", "ufm", "--set", "lr=-1"], ["invalid config", "lr"]),
        (["run", "ufm", "--set", "lr=abc"], ["lr"]),
        (["run", "ufm", "--set", "nope=1"], ["no field 'nope'", "lambda_w"]),
        (["sweep", "ufm", "--grid", "dim=3,4"], ["static field"]),
        (["reproduce", "no_such_experiment"], ["unknown experiment", "ufm_mse"]),
        (["show", "no_such_file.npz"], ["no such file"]),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(capsys, argv, words, tmp_path):
    code, out, err = cj(
        capsys, *argv, *(["--out", tmp_path] if argv[0] in ("run", "sweep") else [])
    )
    assert_one_line_error(code, out, err, *words)


def test_list_into_a_closed_pipe_exits_quietly(toys):
    # The reader goes away before anything is written, as `| head -0` does
    # (`| head -2` closes after a buffer's worth, at a moment that varies).
    p = subprocess.Popen(
        [sys.executable, "-m", "collapse_jax.cli", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(toys),
    )
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_list_model_and_run_help_show_config_fields_with_kinds_and_ranges(capsys):
    code, listed, _ = cj(capsys, "list", "ufm")
    assert code == 0
    code, helped, _ = cj(capsys, "run", "ufm", "--help")
    assert code == 0
    for out in (listed, helped):
        rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
        # defaults and ranges as ufm.Config states them (validated by its helpers)
        assert re.search(
            r"lambda_w\s+float\s+0.005\s+sweepable\s+\(0, inf\)", rows["lambda_w"]
        )
        assert re.search(
            r"momentum\s+float\s+0.9\s+sweepable\s+\[0, 1\)", rows["momentum"]
        )
        assert re.search(
            r"num_classes\s+int\s+4\s+static\s+int \[2, inf\)", rows["num_classes"]
        )
        assert "mse | ce | ls | maxsup" in rows["loss"]


def test_list_shows_whole_experiment_titles_wrapped_and_aligned(capsys, toys):
    code, out, _ = cj(capsys, "list")
    assert code == 0
    section = out.split("experiments:\n", 1)[1]
    starts = [len(m.group(1)) for m in re.finditer(r"^(  \S+\s+)(\S)", section, re.M)]
    assert len(set(starts)) == 1  # every title starts in the same column
    text = " ".join(section.split())
    long_titles = [n for n in report.available() if len(report.get(n).TITLE) > 90]
    assert long_titles
    for name in long_titles:
        assert " ".join(report.get(name).TITLE.split()) in text
    assert "walkplugin" in out and "walkplugin_exp" in out  # entry points


def test_version(capsys):
    import collapse_jax

    code, out, _ = cj(capsys, "--version")
    assert code == 0 and collapse_jax.__version__ in out


# --------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def saved_run(toys, tmp_path_factory):
    """One `run --compare --plot` of the toy model; (exit code, stdout, out dir)."""
    out = tmp_path_factory.mktemp("run")
    argv = ["run", f"{PKG}.models.walk", *RUN, "--compare", "--out", str(out),
            "--plot", str(out / "fig.png")]  # fmt: skip
    return *_main_stdout(argv), out


def test_run_of_a_user_module_path_agrees_with_its_theory(saved_run):
    code, out, path = saved_run
    assert code == 0, out
    assert f"agreement with {PKG}.theory.walk" in out and "agrees with theory" in out
    assert 'config: dim=3 batch=2 dtype="float32" lr=0.1 noise=0.5' in out
    tr = Trajectory.load(path / "walk.npz")
    assert tr.metrics["error"].shape == (16, 21)  # every=1 chosen for 20 steps
    assert (path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_summarises_vector_metrics(saved_run):
    _, out, _ = saved_run
    row = next(line for line in out.splitlines() if line.split()[:2] == ["w", "[3]"])
    assert "|mean|" in row


def test_run_refuses_to_overwrite_a_result_without_force(capsys, saved_run):
    _, _, path = saved_run
    before = (path / "walk.npz").read_bytes()
    argv = ["run", f"{PKG}.models.walk", *RUN, "--out", path]
    code, out, err = cj(capsys, *argv)
    assert_one_line_error(code, out, err, "--force")
    assert (path / "walk.npz").read_bytes() == before
    assert cj(capsys, *argv, "--force")[0] == 0


def test_default_every_divides_steps(capsys, toys, tmp_path):
    code, out, err = cj(capsys, "run", f"{PKG}.models.walk", "--seeds", "16",
                        "--steps", "5", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    assert Trajectory.load(tmp_path / "walk.npz").steps.tolist() == [0, 1, 2, 3, 4, 5]


def test_every_seed_diverged_exits_1_and_shows_no_zero_se(capsys, toys, tmp_path):
    code, out, err = cj(capsys, "run", f"{PKG}.models.walk", *RUN, "--set", "lr=1e8",
                        "--compare", "--out", tmp_path)  # fmt: skip
    assert code == 1
    assert "all 16 seeds diverged" in out and "every seed diverged" in err
    assert "agreement" not in out  # nothing finite to compare
    assert not re.search(r"^\s+error\s", out, re.M)  # no mean ± SE row


def test_checkpoint_mismatch_is_one_line_naming_the_field(capsys, toys, tmp_path):
    argv = ["run", f"{PKG}.models.walk", *RUN, "--checkpoint", tmp_path / "ck",
            "--chunk", "20"]  # fmt: skip
    assert cj(capsys, *argv, "--out", tmp_path / "a")[0] == 0
    code, out, err = cj(capsys, *argv, "--set", "lr=0.2", "--out", tmp_path / "b")
    assert_one_line_error(code, out, err, "lr", "checkpoint")


def test_checkpoint_gets_chunks_and_ctrl_c_says_how_to_resume(toys, tmp_path):
    ckpt = tmp_path / "ck"
    argv = ["run", f"{PKG}.models.walk", "--seeds", "2", "--steps", "1000000",
            "--every", "100", "--chunk", "2000", "--checkpoint", str(ckpt),
            "--out", str(tmp_path)]  # fmt: skip
    p = subprocess.Popen(
        [sys.executable, "-m", "collapse_jax.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(toys),
    )
    deadline = time.monotonic() + 120
    while _checkpoint.latest(str(ckpt)) is None and p.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    err = strip_bars(err)
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "rerun the same command to resume" in line
    assert "collapse-jax run" in line and "--checkpoint" in line
    assert _checkpoint.latest(str(ckpt)) % 20 == 0  # whole chunks of 20 records


# --------------------------------------------------------------------- sweeps, files


@pytest.fixture(scope="module")
def saved_sweep(toys, tmp_path_factory):
    """`sweep --grid lr=0.1,0.2 --grid noise=0.5,2 --compare` against a theory that is
    right at noise=0.5 only; (exit code, stdout, out dir)."""
    out = tmp_path_factory.mktemp("sweep")
    argv = ["sweep", f"{PKG}.models.walk", *RUN, "--grid", "lr=0.1,0.2",
            "--grid", "noise=0.5,2", "--compare", "--theory",
            f"{PKG}.theory.walk_wrong_noise", "--out", str(out)]  # fmt: skip
    return *_main_stdout(argv), out


def test_sweep_summarises_every_grid_point_by_its_values(saved_sweep):
    _, out, path = saved_sweep
    for label in ("lr=0.1, noise=0.5", "lr=0.1, noise=2", "lr=0.2, noise=0.5",
                  "lr=0.2, noise=2"):  # fmt: skip
        assert f": {label}\n" in out
    tr = Trajectory.load(path / "walk_sweep.npz")
    assert tr.metrics["error"].shape == (4, 16, 21)


def test_sweep_compare_names_the_disagreeing_grid_points_and_exits_1(saved_sweep):
    # At noise=2 the wrong theory's floor is 16x too low: 0.35 vs 0.022 at lr=0.1,
    # far beyond 4 SE over 16 seeds; at noise=0.5 it is the exact formula.
    code, out, _ = saved_sweep
    assert code == 1
    failing = [line for line in out.splitlines() if line.startswith("disagrees at")]
    assert [line.split(":")[0] for line in failing] == [
        "disagrees at lr=0.1, noise=2",
        "disagrees at lr=0.2, noise=2",
    ]


def test_show_summarises_a_saved_sweep_and_exports_long_csv(capsys, saved_sweep):
    _, _, path = saved_sweep
    csv_path, png = path / "long.csv", path / "show.png"
    code, out, err = cj(capsys, "show", path / "walk_sweep.npz", "--csv", csv_path,
                        "--plot", png, "--compare")  # fmt: skip
    assert code == 0, err  # the right theory agrees at every grid point
    assert f"model: {PKG}.models.walk" in out
    assert "grid: noise in [0.5, 2]" in out
    assert "seeds: 16" in out and "steps: 20, recorded every 1" in out
    assert "grid point 4/4: lr=0.2, noise=2" in out
    tr = Trajectory.load(path / "walk_sweep.npz")
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "lr,noise,seed,step,metric,value"
    assert len(rows) - 1 == 4 * 16 * 21 * (1 + 3)  # error and w[0..2]
    g, s, t = 3, 5, 7
    row = f"{float(tr.grid['lr'][g])!r},{float(tr.grid['noise'][g])!r},{s},{t},w[1],"
    (value,) = [r.split(",")[-1] for r in rows if r.startswith(row)]
    assert float(value) == tr.metrics["w"][g, s, t, 1]
    assert png.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------- extending


def test_entry_point_model_runs_by_its_name(capsys, toys, tmp_path):
    code, out, err = cj(capsys, "run", "walkplugin", *RUN, "--out", tmp_path)
    assert code == 0, err
    assert f"model: {PKG}.models.walk" in out


def test_reproduce_from_a_user_package_writes_results_and_gallery(
    capsys, toys, tmp_path
):
    code, out, err = cj(capsys, "reproduce", "--from", f"{PKG}.experiments",
                        "--quick", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    assert "[walk_exp] agrees with theory" in out
    record = json.loads((tmp_path / "walk_exp" / "results.json").read_text())
    assert record["passed"] and record["title"].startswith("Online SGD")
    assert (tmp_path / "walk_exp" / "figure.png").exists()
    assert "walk_exp" in (tmp_path / "index.html").read_text()
    code, _, err = cj(capsys, "reproduce", "nope", "--from", f"{PKG}.experiments")
    assert_one_line_error(code, "", err, "walk_exp")


def test_chunk_default_is_about_twenty_equal_chunks():
    import argparse

    args = argparse.Namespace(steps=20_000, every=None, chunk=None, checkpoint="ck")
    assert cli._run_sizes(args) == (200, 1_000)  # 100 records, 20 chunks of 5
    assert cli._default_chunk(20_000, 200) == 1_000
    assert cli._default_chunk(20, 1) == 1
    assert cli._default_every(5) == 1 and cli._default_every(1000) == 10
    for steps, every in ((997, 1), (12_345, 5), (10**6, 1000)):
        chunk = cli._default_chunk(steps, every)
        assert chunk % every == 0
        assert 10 <= np.ceil(steps / chunk) <= 40
