"""Command line: ``collapse-jax list | run | reproduce``."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import time
import traceback

import numpy as np


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string such as mse or adam
    return tuple(value) if isinstance(value, list) else value


def _parse_settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        settings[key.strip()] = _parse_value(value.strip())
    return settings


def _cmd_list(args) -> int:
    from collapse_jax import models, report

    print("models:")
    for name in models.available():
        doc = (models.get(name).__doc__ or "").strip().splitlines()
        print(f"  {name:28s} {doc[0] if doc else ''}")
    print("experiments:")
    for name in report.available():
        print(f"  {name:28s} {report.get(name).TITLE[:90]}")
    return 0


def _cmd_run(args) -> int:
    import jax

    from collapse_jax import models, simulate

    settings = _parse_settings(args.set or [])
    if settings.get("dtype") == "float64":
        jax.config.update("jax_enable_x64", True)
    model = models.get(args.model)
    fields = {f.name for f in dataclasses.fields(model.Config)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise SystemExit(
            f"unknown field(s) {unknown} for {args.model}; choose from {sorted(fields)}"
        )
    try:
        cfg = model.Config(**settings)
    except ValueError as err:
        raise SystemExit(f"invalid config: {err}") from err
    start = time.perf_counter()
    tr = simulate(
        model,
        cfg,
        seeds=args.seeds,
        steps=args.steps,
        every=args.every,
        key=args.key,
        progress=True,
        checkpoint_dir=args.checkpoint,
    )
    seconds = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.model}.npz")
    tr.save(path)
    print(f"{args.model}: {args.seeds} seeds x {args.steps} steps in {seconds:.2f} s")
    print(f"{'metric':24s} {'final mean':>14s} {'± SE':>12s}")
    for name in tr.metrics:
        mean, se = tr.mean(name)[-1], tr.se(name)[-1]
        if np.ndim(mean) == 0:
            print(f"{name:24s} {float(mean):14.6g} {float(se):12.3g}")
    for d in tr.divergences:
        print(f"diverged: {d}")
    print(f"trajectory written to {path}")
    return 0


def _cmd_reproduce(args) -> int:
    from collapse_jax import report

    names = args.names or report.available()
    for name in names:
        report.get(name)  # unknown names fail before anything runs
    os.makedirs(args.out, exist_ok=True)
    records, failures = [], []
    total = time.perf_counter()
    for name in names:
        print(f"[{name}] running ({'quick' if args.quick else 'full'})...", flush=True)
        try:
            record = report.run_experiment(name, args.out, quick=args.quick)
        except Exception:  # one broken experiment must not hide the others
            failures.append(name)
            print(f"[{name}] ERROR\n{traceback.format_exc()}", file=sys.stderr)
            continue
        records.append(record)
        verdict = "agrees with theory" if record["passed"] else "DISAGREES with theory"
        print(f"[{name}] {verdict} ({record['seconds']:.1f} s)", flush=True)
        if not record["passed"]:
            failures.append(name)
    index = report.write_index(args.out, records)
    print(
        f"{len(records) - sum(not r['passed'] for r in records)}/{len(names)} "
        f"experiments agree; {time.perf_counter() - total:.0f} s; gallery: {index}"
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    from collapse_jax import _runtime

    _runtime.enable_compilation_cache()
    parser = argparse.ArgumentParser(
        prog="collapse-jax",
        description="Toy models of collapse, simulated in JAX and checked against theory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list models and experiments").set_defaults(
        func=_cmd_list
    )

    run = sub.add_parser("run", help="simulate one model and save its trajectory")
    run.add_argument("model")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config field, e.g. --set lambda_w=1e-3 --set per_class=(5,3)",
    )
    run.add_argument("--seeds", type=int, default=8)
    run.add_argument("--steps", type=int, default=1000)
    run.add_argument("--every", type=int, default=10)
    run.add_argument("--key", type=int, default=0)
    run.add_argument(
        "--checkpoint",
        default=None,
        help="directory to checkpoint each chunk in and resume from",
    )
    run.add_argument("--out", default="results")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("reproduce", help="run experiments and write the gallery")
    rep.add_argument("names", nargs="*", help="experiments (default: all)")
    rep.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: every experiment in a few minutes on a CPU",
    )
    rep.add_argument("--out", default="out")
    rep.set_defaults(func=_cmd_reproduce)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
