"""Project metadata: the typing marker ships, the license and citation agree with
pyproject.toml."""

import pathlib
import tomllib

import yaml

import collapse_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_py_typed_is_in_the_package_and_listed_as_package_data():
    assert (pathlib.Path(collapse_jax.__file__).parent / "py.typed").is_file()
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["collapse_jax"]


def test_license_file_is_the_apache_2_license_pyproject_declares():
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_citation_file_is_cff_1_2_0_with_the_package_version_and_license():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert {"cff-version", "message", "title", "authors"} <= set(cff)
    assert cff["cff-version"] == "1.2.0"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff["version"] == PYPROJECT["project"]["version"] == collapse_jax.__version__
    assert cff["license"] == PYPROJECT["project"]["license"]["text"]


def test_changelog_has_an_entry_for_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{collapse_jax.__version__}]" in text
