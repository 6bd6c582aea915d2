"""UFM-MSE throughput: collapse_jax.simulate vs plain PyTorch, in one process.

The same toy run — K=10 classes, 50 samples per class, d=64, full-batch gradient descent
for 2000 steps in float32 on 256 seeds — as (1) one jitted/vmapped `simulate` call,
(2) PyTorch batched over seeds with bmm and hand-written gradients, (3) PyTorch looping
over seeds. Throughput is seed-steps per second; the per-seed loop is timed on a subset
of seeds (its cost is linear in the seed count). Run:

    python benchmarks/bench_ufm.py [--seeds 256] [--steps 2000] [--loop-seeds 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

K, N_PER, D = 10, 50, 64
LAM_W, LAM_H, LR = 5e-4, 5e-4, 0.5


def _jax_run(seeds: int, steps: int) -> tuple[float, float]:
    import collapse_jax as cj
    from collapse_jax.models import ufm

    cfg = ufm.Config(
        num_classes=K, dim=D, per_class=N_PER, lambda_w=LAM_W, lambda_h=LAM_H, lr=LR
    )
    cj.simulate(ufm, cfg, seeds=seeds, steps=steps, every=steps)  # compile
    start = time.perf_counter()
    tr = cj.simulate(ufm, cfg, seeds=seeds, steps=steps, every=steps)
    seconds = time.perf_counter() - start
    return seconds, float(tr.mean("loss")[-1])


def _torch_tensors(seeds: int, torch):
    g = torch.Generator().manual_seed(0)
    N = K * N_PER
    W = 0.1 * torch.randn(seeds, K, D, generator=g)
    H = 0.1 * torch.randn(seeds, D, N, generator=g)
    Y = torch.zeros(K, N)
    Y[torch.arange(N) // N_PER, torch.arange(N)] = 1.0
    return W, H, Y


def _torch_batched(seeds: int, steps: int) -> tuple[float, float]:
    import torch

    W, H, Y = _torch_tensors(seeds, torch)
    N = K * N_PER
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            R = (torch.bmm(W, H) - Y) / N  # dL/d(WH)
            gW = torch.bmm(R, H.transpose(1, 2)) + LAM_W * W
            gH = torch.bmm(W.transpose(1, 2), R) + LAM_H * H
            W -= LR * gW
            H -= LR * gH
        loss = (
            ((torch.bmm(W, H) - Y) ** 2).sum((1, 2)) / (2 * N)
            + LAM_W / 2 * (W**2).sum((1, 2))
            + LAM_H / 2 * (H**2).sum((1, 2))
        )
    return time.perf_counter() - start, float(loss.mean())


def _torch_loop(seeds: int, steps: int) -> float:
    import torch

    W_all, H_all, Y = _torch_tensors(seeds, torch)
    N = K * N_PER
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(seeds):
            W, H = W_all[s].clone(), H_all[s].clone()
            for _ in range(steps):
                R = (W @ H - Y) / N
                gW = R @ H.T + LAM_W * W
                gH = W.T @ R + LAM_H * H
                W -= LR * gW
                H -= LR * gH
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--loop-seeds", type=int, default=16)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    jax_s, jax_loss = _jax_run(args.seeds, args.steps)
    bmm_s, bmm_loss = _torch_batched(args.seeds, args.steps)
    loop_s = _torch_loop(args.loop_seeds, args.steps)
    work = args.seeds * args.steps
    rows = [
        ("collapse_jax simulate", work / jax_s, jax_s),
        ("torch batched (bmm)", work / bmm_s, bmm_s),
        (
            "torch per-seed loop",
            args.loop_seeds * args.steps / loop_s,
            loop_s * args.seeds / args.loop_seeds,
        ),
    ]
    print(
        f"UFM-MSE K={K} n={N_PER} d={D}, {args.seeds} seeds x {args.steps} steps, "
        f"float32, torch threads={torch.get_num_threads()}"
    )
    print(
        f"{'implementation':24s} {'seed-steps/s':>14s} {f'seconds ({args.seeds} seeds)':>20s}"
    )
    for name, rate, seconds in rows:
        print(f"{name:24s} {rate:14.4g} {seconds:20.2f}")
    print(f"speed-up vs torch batched:  {rows[0][1] / rows[1][1]:.2f}x")
    print(f"speed-up vs torch loop:     {rows[0][1] / rows[2][1]:.2f}x")
    # Same run, different initial draws: the final losses agree to the seed spread.
    print(f"final loss: jax {jax_loss:.6f}, torch {bmm_loss:.6f}")
    np.testing.assert_allclose(jax_loss, bmm_loss, rtol=1e-2)


if __name__ == "__main__":
    main()
