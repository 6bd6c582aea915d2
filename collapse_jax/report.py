"""Experiments and the gallery: run each figure, write figure.png, results.json and
index.html under an output directory.

An experiment is a module of ``collapse_jax.experiments`` (the top-level
``experiments/`` folder) with:

- ``TITLE``: a one-line caption naming the paper and figure it reproduces;
- ``run(quick: bool) -> Result``: builds configs, simulates, predicts, compares;
- ``plot(result: Result) -> matplotlib.figure.Figure``.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import io
import json
import os
import pkgutil
import time
from types import ModuleType
from typing import Any

import numpy as np

from collapse_jax._config import to_jsonable
from collapse_jax.compare import Agreement
from collapse_jax.trajectory import Divergence, atomic_write_bytes, atomic_write_text

__all__ = ["Result", "available", "get", "run_experiment", "write_index"]

RESULTS_SCHEMA = "collapse_jax.results/1"


@dataclasses.dataclass
class Result:
    """What an experiment's ``run`` returns.

    Attributes:
      config: JSON-ready description of the configs and run sizes.
      agreements: label -> ``Agreement`` (one per compared simulation).
      arrays: named arrays the figure is drawn from (kept small: written to JSON).
      divergences: diverged seeds gathered from the trajectories.
      notes: free text shown under the figure (assumptions, regime).
    """

    config: dict[str, Any]
    agreements: dict[str, Agreement]
    arrays: dict[str, Any] = dataclasses.field(default_factory=dict)
    divergences: list[Divergence] = dataclasses.field(default_factory=list)
    notes: str = ""

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.agreements.values())


def available() -> list[str]:
    """Names of the experiments shipped with the package."""
    import collapse_jax.experiments as pkg

    return sorted(
        m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")
    )


def get(name: str) -> ModuleType:
    """The experiment module ``name``; ``ValueError`` lists the choices otherwise."""
    names = available()
    if name not in names:
        raise ValueError(f"experiment {name!r} is unknown: choose from {names}")
    return importlib.import_module(f"collapse_jax.experiments.{name}")


def run_experiment(name: str, out_dir: str, *, quick: bool = True) -> dict[str, Any]:
    """Runs one experiment; writes ``out_dir/name/{figure.png,results.json}``.

    Returns the JSON record that was written.
    """
    module = get(name)
    start = time.perf_counter()
    result: Result = module.run(quick=quick)
    seconds = time.perf_counter() - start
    fig = module.plot(result)
    target = os.path.join(out_dir, name)
    os.makedirs(target, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    atomic_write_bytes(os.path.join(target, "figure.png"), buffer.getvalue())
    record = {
        "schema": RESULTS_SCHEMA,
        "name": name,
        "title": module.TITLE,
        "quick": quick,
        "seconds": round(seconds, 2),
        "passed": result.passed,
        "config": to_jsonable(result.config),
        "agreement": {
            label: agreement.summary() for label, agreement in result.agreements.items()
        },
        "divergences": [dataclasses.asdict(d) for d in result.divergences],
        "notes": result.notes,
        "arrays": to_jsonable({k: np.asarray(v) for k, v in result.arrays.items()}),
    }
    atomic_write_text(
        os.path.join(target, "results.json"), json.dumps(record, indent=1)
    )
    return record


def write_index(out_dir: str, records: list[dict[str, Any]]) -> str:
    """Writes ``out_dir/index.html``: every figure, its config and agreement table."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>collapse_jax: theory vs simulation</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}",
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0}",
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}",
        ".pass{color:#060}.fail{color:#b00;font-weight:bold}",
        "img{max-width:100%;border:1px solid #eee}",
        "details{font-size:12px}",
        "</style></head><body><h1>collapse_jax: theory vs simulation</h1>",
    ]
    n_pass = sum(r["passed"] for r in records)
    parts.append(
        f"<p>{n_pass} of {len(records)} experiments agree with theory.</p><ul>"
    )
    for r in records:
        verdict = "pass" if r["passed"] else "FAIL"
        parts.append(
            f"<li><a href='#{r['name']}'>{html.escape(r['name'])}</a> "
            f"<span class='{verdict.lower()}'>{verdict}</span></li>"
        )
    parts.append("</ul>")
    for r in records:
        verdict = "pass" if r["passed"] else "FAIL"
        parts.append(
            f"<h2 id='{r['name']}'>{html.escape(r['name'])} "
            f"<span class='{verdict.lower()}'>{verdict}</span></h2>"
        )
        parts.append(f"<p>{html.escape(r['title'])}</p>")
        parts.append(f"<img src='{r['name']}/figure.png' alt='{r['name']}'>")
        if r["notes"]:
            parts.append(f"<p>{html.escape(r['notes'])}</p>")
        parts.append(
            "<table><tr><th>comparison</th><th>metric</th><th>at</th>"
            "<th>max |err|</th><th>max tol</th><th>err/tol</th><th>seeds</th>"
            "<th>z</th><th>verdict</th></tr>"
        )
        for label, rows in r["agreement"].items():
            for row in rows:
                ok = "pass" if row["passed"] else "fail"
                parts.append(
                    f"<tr><td>{html.escape(label)}</td><td>{html.escape(row['metric'])}"
                    f"</td><td>{row['at']}</td><td>{row['max_abs_error']:.3g}</td>"
                    f"<td>{row['max_tolerance']:.3g}</td>"
                    f"<td>{row['worst_error_over_tolerance']:.2f}</td>"
                    f"<td>{row['n_seeds']}</td><td>{row['z']:g}</td>"
                    f"<td class='{ok}'>{ok}</td></tr>"
                )
        parts.append("</table>")
        if r["divergences"]:
            parts.append(
                f"<p class='fail'>{len(r['divergences'])} diverged runs: "
                f"{html.escape(str(r['divergences'][:5]))}</p>"
            )
        parts.append(
            "<details><summary>config</summary><pre>"
            f"{html.escape(json.dumps(r['config'], indent=1))}</pre></details>"
        )
        parts.append(
            f"<p><small>{r['seconds']} s; <a href='{r['name']}/results.json'>"
            "results.json</a></small></p>"
        )
    parts.append("</body></html>")
    path = os.path.join(out_dir, "index.html")
    atomic_write_text(path, "\n".join(parts))
    return path
