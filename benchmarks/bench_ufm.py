"""UFM-MSE throughput: collapse_jax.simulate vs PyTorch and the compute roof.

The same toy run — K=10 classes, 50 samples per class, d=64, full-batch gradient descent
in float32 — as (1) one `simulate` call, (2) PyTorch batched over seeds with bmm and
hand-written gradients, (3) PyTorch looping over seeds. Throughput is seed-steps per
second, the median of `--repeats` timings with their min-max spread. The torch code
times the steps only, so collapse_jax is timed as a run of 2n steps less a run of n:
its initial states' random draws and the returned records are not counted. Each row
runs twice, in two child processes: pinned to one core (one JAX device, one torch
thread) and on every core (JAX's default here: one host device per core; torch with
one thread per core). The roof is the best large-GEMM rate (JAX or torch, 2048^3
float32) divided by the step's 6 K d N GEMM FLOPs.

    python benchmarks/bench_ufm.py [--seeds 64 256 1024 4096] [--steps 100]
    python benchmarks/bench_ufm.py --blocks 4096   # throughput vs block size

Time it on a quiet machine: nothing else running, not beside the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

K, N_PER, D = 10, 50, 64
N = K * N_PER
LAM_W, LAM_H, LR = 5e-4, 5e-4, 0.5
FLOPS_PER_SEED_STEP = 6 * K * D * N  # W H, R Hᵀ, Wᵀ R: three K x d x N GEMMs


def _timed(fn, repeats, warm=None):
    (warm or fn)()  # compilation, allocator, thread pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _rates(work, times):
    rates = sorted(work / t for t in times)
    return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1]}


class _UfmLoss:
    """UFM-MSE whose ``observe`` records only the loss, as the torch baselines compute:
    the benchmark times the training steps, not the NC metrics."""

    def __init__(self):
        from collapse_jax.models import ufm

        self.init, self.step = ufm.init, ufm.step
        self.observe = lambda state, cfg: {"loss": ufm.loss(state.params, cfg)}
        self.__name__ = "ufm"


def _jax(seeds, steps, repeats, block_size=None, model=None):
    import collapse_jax as cj
    from collapse_jax.models import ufm

    model = model or _UfmLoss()
    cfg = ufm.Config(
        num_classes=K, dim=D, per_class=N_PER, lambda_w=LAM_W, lambda_h=LAM_H, lr=LR
    )

    def run(n):
        cj.simulate(model, cfg, seeds=seeds, steps=n, every=n, block_size=block_size)

    # Step counts are traced, not compiled in: one short run compiles the program.
    run(1)
    # The rate of the steps alone, as the torch code times them: a run of 2n steps
    # less one of n leaves out drawing the initial states and returning the records.
    extra = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        middle = time.perf_counter()
        run(2 * steps)
        end = time.perf_counter()
        extra.append((end - middle) - (middle - start))
    return _rates(seeds * steps, extra)


def _torch_tensors(seeds, torch):
    g = torch.Generator().manual_seed(0)
    W = 0.1 * torch.randn(seeds, K, D, generator=g)
    H = 0.1 * torch.randn(seeds, D, N, generator=g)
    Y = torch.zeros(K, N)
    Y[torch.arange(N) // N_PER, torch.arange(N)] = 1.0
    return W, H, Y


def _gd_step(W, H, Y, torch, batched):
    mm = torch.bmm if batched else torch.mm
    R = (mm(W, H) - Y) / N  # dL/d(WH)
    gW = mm(R, H.transpose(-1, -2)) + LAM_W * W
    gH = mm(W.transpose(-1, -2), R) + LAM_H * H
    W -= LR * gW
    H -= LR * gH


def _torch_batched(seeds, steps, repeats):
    import torch

    W, H, Y = _torch_tensors(seeds, torch)

    def run():
        with torch.no_grad():
            for _ in range(steps):
                _gd_step(W, H, Y, torch, batched=True)

    return _rates(seeds * steps, _timed(run, repeats, warm=lambda: _one_step(W, H, Y)))


def _one_step(W, H, Y):
    import torch

    with torch.no_grad():
        _gd_step(W.clone(), H.clone(), Y, torch, batched=W.ndim == 3)


def _torch_loop(seeds, steps, repeats):
    import torch

    W_all, H_all, Y = _torch_tensors(seeds, torch)

    def run():
        with torch.no_grad():
            for s in range(seeds):
                W, H = W_all[s].clone(), H_all[s].clone()
                for _ in range(steps):
                    _gd_step(W, H, Y, torch, batched=False)

    return _rates(seeds * steps, _timed(run, repeats))


def _gemm_gflops(repeats):
    import jax
    import jax.numpy as jnp
    import torch

    n = 2048
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    jax_t = _timed(lambda: f(a).block_until_ready(), repeats)
    b = torch.randn(n, n)
    torch_t = _timed(lambda: b @ b, repeats)
    return max(2 * n**3 / min(jax_t), 2 * n**3 / min(torch_t)) / 1e9


def _child(args) -> dict:
    """Runs in a child process; ``--mode one`` was pinned to one core before JAX."""
    import jax
    import torch

    import collapse_jax  # noqa: F401  (first: it sets up one JAX device per core)

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    out = {
        "jax": jax.__version__,
        "torch": torch.__version__,
        "devices": jax.local_device_count(),
        "gemm_gflops": _gemm_gflops(args.repeats),
        "rows": {},
    }
    if args.blocks:
        model = _UfmLoss()
        for b in (2, 4, 8, 16, 32, 64, None):
            key = "auto" if b is None else str(b)
            out["rows"][key] = _jax(args.blocks, args.steps, args.repeats, b, model)
        return out
    for s in args.seeds:
        out["rows"][str(s)] = {
            "jax": _jax(s, args.steps, args.repeats),
            "bmm": _torch_batched(s, args.steps, args.repeats),
            "loop": _torch_loop(min(s, args.loop_seeds), args.steps, args.repeats),
        }
    return out


def _spawn(mode, argv) -> dict:
    env = dict(os.environ)
    if mode == "one":
        env["COLLAPSE_JAX_CPU_DEVICES"] = "1"
        cmd = ["taskset", "-c", "0", sys.executable, __file__, "--child", mode]
    else:
        cmd = [sys.executable, __file__, "--child", mode]
    done = subprocess.run(cmd + argv, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode}-core child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(r):
    return f"{r['median']:9.3g} ({r['min']:.3g}-{r['max']:.3g})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-seeds", type=int, default=8)
    parser.add_argument(
        "--blocks", type=int, default=0, help="block sweep at this many seeds"
    )
    parser.add_argument("--child", choices=("one", "all"))
    args, _ = parser.parse_known_args()
    if args.child:
        print(json.dumps(_child(args)))
        return
    argv = [a for a in sys.argv[1:]]
    one, every = _spawn("one", argv), _spawn("all", argv)
    cores = len(os.sched_getaffinity(0))
    print(
        f"UFM-MSE K={K} n={N_PER} d={D} float32, {args.steps} steps; jax "
        f"{every['jax']}, torch {every['torch']}; {cores} cores; seed-steps/s, "
        f"median (min-max) of {args.repeats}"
    )
    if args.blocks:
        print(f"{'block size':>10s} {'one core':>28s} {'all cores':>28s}")
        for key in one["rows"]:
            print(
                f"{key:>10s} {_fmt(one['rows'][key]):>28s} {_fmt(every['rows'][key]):>28s}"
            )
        return
    for label, res in (("one core", one), (f"all {cores} cores", every)):
        roof = res["gemm_gflops"] * 1e9 / FLOPS_PER_SEED_STEP
        print(
            f"\n{label}: {res['devices']} JAX device(s); large GEMM "
            f"{res['gemm_gflops']:.0f} GFLOP/s -> roof {roof:.3g} seed-steps/s"
        )
        print(
            f"{'seeds':>6s} {'collapse_jax':>28s} {'torch bmm':>28s} "
            f"{'torch loop':>28s} {'x bmm':>6s} {'x loop':>7s} {'% roof':>7s}"
        )
        for s, row in res["rows"].items():
            j = row["jax"]["median"]
            print(
                f"{s:>6s} {_fmt(row['jax']):>28s} {_fmt(row['bmm']):>28s} "
                f"{_fmt(row['loop']):>28s} {j / row['bmm']['median']:6.2f} "
                f"{j / row['loop']['median']:7.2f} {100 * j / roof:6.0f}%"
            )
    print("\ncollapse_jax all cores / one core:")
    for s in every["rows"]:
        ratio = every["rows"][s]["jax"]["median"] / one["rows"][s]["jax"]["median"]
        print(f"{s:>6s} {ratio:.2f}x")


if __name__ == "__main__":
    main()
