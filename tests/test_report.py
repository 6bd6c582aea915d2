"""The gallery: results.json records, their provenance, and the merged index.

No experiment runs here: the records come from hand-made ``Result`` objects (a
hand-built ``Agreement``) and a one-line figure.
"""

import datetime
import json
import os
import pathlib
import types

import jax
import jaxlib
import matplotlib
import numpy as np
import pytest

import collapse_jax
from collapse_jax import plotting, report
from collapse_jax.compare import Agreement, MetricAgreement

matplotlib.use("Agg")

REPO = pathlib.Path(report.__file__).resolve().parents[1]


def _agreement(passed: bool) -> Agreement:
    error = np.array([0.1]) if passed else np.array([2.0])
    metric = MetricAgreement(
        metric="loss",
        at="final",
        mean=np.array([1.0]) + error,
        se=np.array([0.25]),
        theory=np.array([1.0]),
        error=error,
        tolerance=np.array([1.0]),
        n_seeds=8,
        z=4.0,
        atol=0.0,
        rtol=0.0,
    )
    return Agreement({"loss": metric})


def _save(out, name, *, passed=True, quick=True, notes=("theory/ufm.md",)):
    fig, axes = plotting.figure()
    axes[0, 0].plot([0, 1], [0, 1])
    result = report.Result(
        config={"seeds": 8}, agreements={"run": _agreement(passed)}, arrays={}
    )
    return report.save_result(
        str(out),
        name,
        result,
        fig,
        title=f"{name} title",
        quick=quick,
        seconds=0.5,
        notes_paths=notes,
    )


def _index_names(out):
    with open(os.path.join(out, "index.json"), encoding="utf-8") as f:
        return [r["name"] for r in json.load(f)]


def test_reproducing_some_experiments_keeps_the_others_in_the_index(tmp_path):
    a, b = _save(tmp_path, "exp_a"), _save(tmp_path, "exp_b")
    report.write_index(str(tmp_path), [a, b])
    b_again = _save(tmp_path, "exp_b", passed=False)  # rerun of one experiment only
    path = report.write_index(str(tmp_path), [b_again])
    page = pathlib.Path(path).read_text()
    assert _index_names(tmp_path) == ["exp_a", "exp_b"]
    assert "id='exp_a'" in page and "id='exp_b'" in page
    assert "1 of 2 experiments agree" in page  # exp_b's newest record (a failure) won


def test_newest_record_per_experiment_wins_the_merge(tmp_path):
    saved = _save(tmp_path, "exp_a")
    older = json.loads(json.dumps(saved))
    older["provenance"]["date"] = "2000-01-01T00:00:00+00:00"
    older["passed"] = False
    legacy = {k: v for k, v in older.items() if k != "provenance"}  # schema /1
    legacy["schema"] = "collapse_jax.results/1"
    report.write_index(str(tmp_path), [older, legacy])
    with open(tmp_path / "index.json", encoding="utf-8") as f:
        (entry,) = json.load(f)
    assert entry["provenance"]["date"] == saved["provenance"]["date"]
    assert entry["passed"] is True


def test_index_can_be_written_from_the_given_records_only(tmp_path):
    _save(tmp_path, "exp_a")
    b = _save(tmp_path, "exp_b")
    report.write_index(str(tmp_path), [b], merge=False)
    assert _index_names(tmp_path) == ["exp_b"]


def test_results_json_records_mode_date_versions_commit_and_platform(tmp_path):
    record = _save(tmp_path, "exp_a", quick=False)
    with open(tmp_path / "exp_a" / "results.json", encoding="utf-8") as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(record))
    p = on_disk["provenance"]
    assert p["mode"] == "full"
    date = datetime.datetime.fromisoformat(p["date"])
    assert date.utcoffset() == datetime.timedelta(0)
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - date).total_seconds()) < 600
    assert p["collapse_jax"] == collapse_jax.__version__
    assert (p["jax"], p["jaxlib"]) == (jax.__version__, jaxlib.__version__)
    assert p["platform"] and p["python"] and p["backend"] == jax.default_backend()
    if (REPO / ".git").exists():
        assert len(p["git_commit"]) == 40 and isinstance(p["git_dirty"], bool)


def test_provenance_outside_a_git_checkout_has_no_commit_and_does_not_fail(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(report, "_REPO_ROOT", tmp_path)
    assert report.provenance(True)["git_commit"] is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    p = report.provenance(True)
    assert p["git_commit"] is None and p["git_dirty"] is None


def test_gallery_entry_shows_provenance_and_links_its_theory_note(tmp_path):
    record = _save(tmp_path, "exp_a")
    page = pathlib.Path(report.write_index(str(tmp_path), [record])).read_text()
    p = record["provenance"]
    assert "quick run" in page and p["date"] in page and f"jax {p['jax']}" in page
    if p["git_commit"]:
        assert p["git_commit"][:10] in page
    href = os.path.relpath(REPO / "theory" / "ufm.md", tmp_path)
    assert f"href='{pathlib.Path(href).as_posix()}'" in page
    assert (tmp_path / href).resolve().is_file()


def test_theory_notes_come_from_the_model_modules_an_experiment_imports():
    from collapse_jax.models import ufm
    from collapse_jax.theory import deep_linear_ufm

    module = types.ModuleType("fake_experiment")
    module.ufm, module.theory, module.np = ufm, deep_linear_ufm, np
    assert report.theory_notes(module) == [
        "theory/ufm.md",
        "theory/deep_linear_ufm.md",
    ]
    module.MODELS = ("linear_vae",)
    assert report.theory_notes(module) == ["theory/linear_vae.md"]
    module.MODELS = ("no_such_model",)
    with pytest.raises(ValueError, match="no_such_model"):
        report.theory_notes(module)


def test_every_gallery_experiment_links_a_theory_note_that_exists():
    for name in report.available():
        notes = report.theory_notes(report.get(name))
        assert notes, name
        for note in notes:
            assert (REPO / note).is_file(), (name, note)


def test_gallery_files_are_readable_as_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        _save(tmp_path, "exp_a")
        report.write_index(str(tmp_path), [])
    finally:
        os.umask(old)
    for path in ("exp_a/results.json", "exp_a/figure.png", "index.html"):
        assert (tmp_path / path).stat().st_mode & 0o777 == 0o644, path
