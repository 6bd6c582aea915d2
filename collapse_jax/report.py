"""Experiments and the gallery: run each figure, write figure.png, results.json and
index.html under an output directory.

An experiment is a module of ``collapse_jax.experiments`` (the top-level
``experiments/`` folder) with:

- ``TITLE``: a one-line caption naming the paper and figure it reproduces;
- ``run(quick: bool) -> Result``: builds configs, simulates, predicts, compares;
- ``plot(result: Result) -> matplotlib.figure.Figure``;
- optionally ``MODELS``: the toy models it exercises (names in ``collapse_jax.models``);
  without it they are read off the model and theory modules it imports. The gallery
  links each to its derivation note ``theory/<model>.md``.

Every ``results.json`` carries its provenance (quick or full, UTC date, package, JAX and
jaxlib versions, git commit when run from a checkout, platform), and the gallery index
merges the records already under the output directory with the new ones, the newest
record of each experiment winning, so reproducing a few experiments keeps the others.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import html
import importlib
import json
import os
import pathlib
import pkgutil
import platform
import subprocess
import time
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np

from collapse_jax._config import to_jsonable
from collapse_jax._io import atomic_write as _atomic_write_bytes
from collapse_jax.compare import Agreement
from collapse_jax.trajectory import Divergence

__all__ = [
    "Result",
    "available",
    "get",
    "load_records",
    "provenance",
    "run_experiment",
    "save_result",
    "theory_notes",
    "write_index",
]

# /2 adds "provenance", "models" and "theory_notes"; /1 records still load.
RESULTS_SCHEMA = "collapse_jax.results/2"
_SCHEMA_PREFIX = "collapse_jax.results/"
# The checkout this package was imported from, if it is one (theory/ lives beside it).
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _write_text(path: str, text: str) -> None:
    _atomic_write_bytes(path, text.encode())


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


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout
        return None
    return out.stdout.strip()


def _git_commit() -> dict[str, Any]:
    """Commit of the checkout this package runs from; ``None`` outside one (an
    installed package inside some other repository does not count)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or pathlib.Path(top).resolve() != _REPO_ROOT:
        return {"git_commit": None, "git_dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }


def provenance(quick: bool) -> dict[str, Any]:
    """Where and how a result was made: run mode, UTC date, versions, commit, platform."""
    import jax
    import jaxlib

    import collapse_jax

    return {
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "collapse_jax": collapse_jax.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        **_git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
    }


def _model_names() -> set[str]:
    from collapse_jax import models

    return set(models.available())


def theory_notes(module: ModuleType) -> list[str]:
    """Repository-relative paths of the derivation notes of the models ``module``
    exercises: its ``MODELS`` if it names them, else every ``collapse_jax.models.X``
    or ``collapse_jax.theory.X`` it imports."""
    names = getattr(module, "MODELS", None)
    if names is None:
        names = []
        for value in vars(module).values():
            if isinstance(value, ModuleType):
                parts = value.__name__.split(".")
                if len(parts) == 3 and parts[:2] in (
                    ["collapse_jax", "models"],
                    ["collapse_jax", "theory"],
                ):
                    names.append(parts[2])
    known = _model_names()
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(
            f"{module.__name__}.MODELS names unknown models {unknown}: "
            f"choose from {sorted(known)}"
        )
    return [f"theory/{n}.md" for n in dict.fromkeys(names)]


def save_result(
    out_dir: str,
    name: str,
    result: Result,
    fig,
    *,
    title: str,
    quick: bool,
    seconds: float,
    notes_paths: Iterable[str] = (),
) -> dict[str, Any]:
    """Writes ``out_dir/name/{figure.png,results.json}`` for an experiment's result and
    its figure (closed afterwards); returns the record written to results.json."""
    from collapse_jax import plotting

    target = os.path.join(out_dir, name)
    os.makedirs(target, exist_ok=True)
    try:
        png = plotting.png_bytes(fig)
    finally:
        plotting.close(fig)
    _atomic_write_bytes(os.path.join(target, "figure.png"), png)
    notes_paths = list(notes_paths)
    record = {
        "schema": RESULTS_SCHEMA,
        "name": name,
        "title": title,
        "quick": quick,
        "seconds": round(seconds, 2),
        "passed": result.passed,
        "provenance": provenance(quick),
        "models": [pathlib.PurePosixPath(p).stem for p in notes_paths],
        "theory_notes": notes_paths,
        "config": to_jsonable(result.config),
        "agreement": {
            label: agreement.summary() for label, agreement in result.agreements.items()
        },
        "divergences": [dataclasses.asdict(d) for d in result.divergences],
        "notes": result.notes,
        "arrays": to_jsonable({k: np.asarray(v) for k, v in result.arrays.items()}),
    }
    _write_text(os.path.join(target, "results.json"), json.dumps(record, indent=1))
    return record


def run_experiment(name: str, out_dir: str, *, quick: bool = True) -> dict[str, Any]:
    """Runs one experiment; writes ``out_dir/name/{figure.png,results.json}``.

    Returns the JSON record that was written.
    """
    module = get(name)
    start = time.perf_counter()
    result: Result = module.run(quick=quick)
    seconds = time.perf_counter() - start
    return save_result(
        out_dir,
        name,
        result,
        module.plot(result),
        title=module.TITLE,
        quick=quick,
        seconds=seconds,
        notes_paths=theory_notes(module),
    )


def load_records(out_dir: str) -> list[dict[str, Any]]:
    """The records of every ``out_dir/*/results.json`` (unreadable ones skipped)."""
    records = []
    for path in sorted(
        glob.glob(os.path.join(glob.escape(out_dir), "*", "results.json"))
    ):
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):  # a half-copied or foreign file
            continue
        if (
            isinstance(record, dict)
            and str(record.get("schema", "")).startswith(_SCHEMA_PREFIX)
            and record.get("name") == os.path.basename(os.path.dirname(path))
        ):
            records.append(record)
    return records


def _date(record: dict[str, Any]) -> str:
    return (record.get("provenance") or {}).get("date") or ""  # /1: oldest


def _merge(old: list[dict], new: list[dict]) -> list[dict]:
    """One record per experiment, the newest by provenance date; ``new`` wins ties."""
    best: dict[str, dict] = {}
    for record in old:
        if _date(record) >= _date(best.get(record["name"], {})):
            best[record["name"]] = record
    for record in new:
        if _date(record) >= _date(best.get(record["name"], {})):
            best[record["name"]] = record
    return [best[n] for n in sorted(best)]


def _provenance_line(record: dict[str, Any]) -> str:
    p = record.get("provenance")
    if not p:
        return "provenance not recorded (written by an older version)"
    commit = p.get("git_commit")
    where = (
        f"commit {commit[:10]}{' (uncommitted changes)' if p.get('git_dirty') else ''}"
        if commit
        else "not run from a git checkout"
    )
    return (
        f"{p['mode']} run, {p['date']}; collapse_jax {p['collapse_jax']}, "
        f"jax {p['jax']}, jaxlib {p['jaxlib']}; {where}; {p['platform']}, "
        f"Python {p['python']}, {p['backend']} × {p['devices']}"
    )


def _note_link(note: str, out_dir: str) -> str:
    """A link to the note when the checkout has it, else its repository path."""
    local = _REPO_ROOT / note
    text = html.escape(note)
    if not local.is_file():
        return f"<code>{text}</code>"
    href = os.path.relpath(local, os.path.abspath(out_dir))
    return f"<a href='{html.escape(pathlib.Path(href).as_posix())}'><code>{text}</code></a>"


def write_index(
    out_dir: str, records: list[dict[str, Any]], *, merge: bool = True
) -> str:
    """Writes ``out_dir/index.html`` (and a summary ``index.json``): every figure, its
    provenance, theory notes, config and agreement table.

    With ``merge`` (the default) the records already saved under ``out_dir`` join
    ``records``, the newest of each experiment winning, so the gallery keeps the
    experiments that this call did not rerun.
    """
    records = _merge(load_records(out_dir) if merge else [], list(records))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>collapse_jax: theory vs simulation</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}",
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0}",
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}",
        ".pass{color:#060}.fail{color:#b00;font-weight:bold}",
        ".prov{color:#555;font-size:12px}",
        "img{max-width:100%;border:1px solid #eee}",
        "details{font-size:12px}",
        "</style></head><body><h1>collapse_jax: theory vs simulation</h1>",
    ]
    n_pass = sum(r["passed"] for r in records)
    modes = sorted(
        {(r.get("provenance") or {}).get("mode", "unknown") for r in records}
    )
    parts.append(
        f"<p>{n_pass} of {len(records)} experiments agree with theory "
        f"({', '.join(modes)} runs; each entry states its own provenance).</p><ul>"
    )
    for r in records:
        verdict = "pass" if r["passed"] else "FAIL"
        name = html.escape(r["name"])
        parts.append(
            f"<li><a href='#{name}'>{name}</a> "
            f"<span class='{verdict.lower()}'>{verdict}</span></li>"
        )
    parts.append("</ul>")
    for r in records:
        verdict = "pass" if r["passed"] else "FAIL"
        name = html.escape(r["name"])
        parts.append(
            f"<h2 id='{name}'>{name} <span class='{verdict.lower()}'>{verdict}</span></h2>"
        )
        parts.append(f"<p>{html.escape(r['title'])}</p>")
        parts.append(f"<p class='prov'>{html.escape(_provenance_line(r))}</p>")
        notes = r.get("theory_notes") or []
        if notes:
            links = ", ".join(_note_link(n, out_dir) for n in notes)
            parts.append(f"<p class='prov'>theory: {links}</p>")
        parts.append(f"<img src='{name}/figure.png' alt='{name}'>")
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
            f"<p><small>{r['seconds']} s; <a href='{name}/results.json'>"
            "results.json</a></small></p>"
        )
    parts.append("</body></html>")
    os.makedirs(out_dir, exist_ok=True)
    summary = [
        {
            k: r.get(k)
            for k in ("name", "title", "passed", "quick", "seconds", "provenance")
        }
        | {"results": f"{r['name']}/results.json"}
        for r in records
    ]
    _write_text(os.path.join(out_dir, "index.json"), json.dumps(summary, indent=1))
    path = os.path.join(out_dir, "index.html")
    _write_text(path, "\n".join(parts))
    return path
