"""docs/glossary.md documents every metric that every model records.

Metric names and shapes come from ``jax.eval_shape`` of ``observe(init(key, cfg))``, so
nothing compiles. Configs: the small ones registered in tests/test_model_contract.py
(a model not registered yet falls back to its default Config), plus the ufm settings
that add keys (softmax losses, tethered inputs, mixup).
"""

import importlib.util
import pathlib
import re

import jax
import pytest

from collapse_jax import models

ROOT = pathlib.Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "glossary.md"

_spec = importlib.util.spec_from_file_location(
    "_model_contract", pathlib.Path(__file__).with_name("test_model_contract.py")
)
_contract = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)

# Settings under which a model records keys that its small config does not.
EXTRA_SETTINGS = {"ufm": [dict(loss="ce"), dict(tether=True), dict(mixup=True)]}


def _sections() -> dict[str, dict[str, int]]:
    """model -> {metric: documented rank}, from the '## `model`' tables."""
    sections = {}
    for block in re.split(r"^## ", GLOSSARY.read_text(encoding="utf-8"), flags=re.M):
        head = re.fullmatch(r"`(\w+)`", block.splitlines()[0].strip())
        if head is None:
            continue
        rows = {}
        for line in block.splitlines():
            cells = line.split("|")
            if not line.startswith("| `") or len(cells) < 4:
                continue
            shape = cells[2].strip().strip("`").strip("[]")
            rank = 0 if not shape else shape.count(",") + 1
            for name in re.findall(r"`(\w+)`", cells[1]):
                rows[name] = rank
        sections[head.group(1)] = rows
    return sections


def _index() -> dict[str, set[str]]:
    text = GLOSSARY.read_text(encoding="utf-8")
    block = text.split("## Index", 1)[1].split("\n## ", 1)[0]
    index = {}
    for line in block.splitlines():
        match = re.match(r"\| `(\w+)` \| (.+) \|$", line)
        if match:
            index[match.group(1)] = {m.strip() for m in match.group(2).split(",")}
    return index


def _recorded(name: str) -> dict[str, int]:
    """metric -> rank for every key ``name``'s observe returns under the configs."""
    model = models.get(name)
    base = _contract.SMALL.get(name, {})
    recorded = {}
    for extra in [{}, *EXTRA_SETTINGS.get(name, [])]:
        cfg = model.Config(**{**base, **extra})
        shapes = jax.eval_shape(
            lambda key, cfg=cfg: model.observe(model.init(key, cfg), cfg),
            jax.random.PRNGKey(0),
        )
        recorded |= {k: len(v.shape) for k, v in shapes.items()}
    return recorded


@pytest.fixture(scope="module")
def sections():
    return _sections()


@pytest.mark.parametrize("name", models.available())
def test_every_recorded_metric_has_a_glossary_row_with_its_rank(name, sections):
    assert name in sections, f"docs/glossary.md has no section '## `{name}`'"
    documented = sections[name]
    recorded = _recorded(name)
    missing = sorted(set(recorded) - set(documented))
    assert not missing, f"{name}: metrics missing from docs/glossary.md: {missing}"
    wrong = {k: (documented[k], r) for k, r in recorded.items() if documented[k] != r}
    assert not wrong, f"{name}: (documented, recorded) ranks differ: {wrong}"


def test_glossary_index_lists_each_metric_with_the_models_that_record_it(sections):
    by_metric = {}
    for model, rows in sections.items():
        for metric in rows:
            by_metric.setdefault(metric, set()).add(model)
    assert _index() == by_metric
