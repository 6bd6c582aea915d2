"""Minimal reproducer: batched LAPACK on several CPU devices deadlocks jaxlib 0.9.1-0.10.2.

No collapse_jax involved, for an upstream report. Two (or more) host devices each run a
batched ``eigvalsh`` (or ``svd``) of 64x64 matrices under one ``jit``:

    python benchmarks/lapack_hang.py [--op eigh|svd] [--per-device 128] [--devices 2]

prints ``ok`` on a healthy jaxlib and never returns on an affected one (run it under
``timeout 60``). Mechanism, from a native stack of the hung process (gdb): every thread
of XLA's intra-op pool sits in ``absl::BlockingCounter::Wait`` (0.10) or
``tsl::BlockUntilReady`` (0.9.1 SVD) inside the LAPACK kernel, which has split its batch
into tasks on that same pool and waits for them; with one program per device on the
shared pool, no thread is left to run the tasks.

Measured on a 2-core x86 CPU, jax/jaxlib from PyPI, 50 calls each, 60 s timeout:

| jaxlib | eigh, 32/device | eigh, 128/device | svd, 32 and 128/device |
|---|---|---|---|
| 0.6.2, 0.7.2, 0.8.3, 0.9.0 | ok | ok | ok (0.9.0) |
| 0.9.2 | ok | ok | hangs |
| 0.10.0 | hangs | hangs | |
| 0.10.1 | ok once, hangs once | hangs | |
| 0.10.2 | hangs | hangs | |

Sources: jax commits 460d6b5c3f (SVD batch parallel on the pool, in 0.9.1) and
bfd9e1fbd3 (all LAPACK kernels, 0.10.0); 859992407d turns it off in open-source builds
and is in no release up to 0.10.2.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--op", choices=("eigh", "svd"), default="eigh")
    parser.add_argument("--per-device", type=int, default=128)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={args.devices}"
    )
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()), ("b",))
    x = jax.random.normal(
        jax.random.PRNGKey(0), (args.per_device * args.devices, args.n, args.n)
    )
    x = jax.device_put(
        x @ x.transpose(0, 2, 1), NamedSharding(mesh, PartitionSpec("b"))
    )

    def values(a):
        if args.op == "eigh":
            return jnp.linalg.eigvalsh(a).sum()
        return jnp.linalg.svd(a, compute_uv=False).sum()

    f = jax.jit(values)
    start = time.perf_counter()
    for i in range(50):
        f(x + i).block_until_ready()
    print(
        f"jax {jax.__version__}, {args.op}, {args.devices} devices x "
        f"{args.per_device} matrices {args.n}x{args.n}: ok in "
        f"{time.perf_counter() - start:.2f} s"
    )


if __name__ == "__main__":
    main()
