"""docs/architecture.md names only what exists.

The map table at the top of the doc (``| `module` | responsibility | `Name`, `Name` |``) is parsed
and every listed name is looked up on its module. Every other backticked dotted name in the doc
that starts with ``multimodal.`` (or with a subpackage that is not also a config section, e.g.
``training.fold``) must resolve to a module or to an attribute of one. A renamed or removed module,
class or function therefore fails here until the doc is updated.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

#: Subpackages whose names are not also config sections (``data.``, ``fusion.``, ``encoders.``
#: are: ``data.folds`` is a config key), so ``training.fold`` in backticks means a module.
RELATIVE_PREFIXES = (
    "training.",
    "models.",
    "survival.",
    "evaluation.",
    "explain.",
    "tuning.",
    "dashboard.",
    "cohort_analysis.",
)

_BACKTICKED = re.compile(r"`([^`\n]+)`")
_DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")


def map_rows(text: str) -> list[tuple[str, list[str]]]:
    """``(module, [names])`` for every row of the first table under ``## Map``."""
    section = text.split("## Map", 1)
    if len(section) < 2:
        raise ValueError(f"{DOC.name} has no '## Map' section")
    rows, in_table = [], False
    for line in section[1].splitlines():
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or set(cells[0]) <= {"-", ":"} or not cells[0].startswith("`"):
            continue  # header or separator
        module = cells[0].strip("`")
        names = _BACKTICKED.findall(cells[2])
        rows.append((module, names))
    return rows


def dotted_names(text: str) -> list[str]:
    """Backticked dotted names that refer to package objects (``multimodal.x.y`` or
    ``training.fold``-style), in order of appearance, without duplicates."""
    found: list[str] = []
    for span in _BACKTICKED.findall(text):
        for name in _DOTTED.findall(span):
            if name.startswith(RELATIVE_PREFIXES):
                name = f"multimodal.{name}"
            if name.startswith("multimodal.") and name not in found:
                found.append(name)
    return found


def resolve(dotted: str) -> object:
    """The module or attribute named by ``dotted``; AttributeError / ImportError when missing."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        prefix = ".".join(parts[: i + 1])
        if isinstance(obj, ModuleType) and hasattr(obj, "__path__"):
            try:
                obj = importlib.import_module(prefix)
                continue
            except ModuleNotFoundError as exc:
                if exc.name != prefix:  # the module exists but one of its imports is missing
                    raise
        raise AttributeError(f"{'.'.join(parts[:i])} has no {part!r}")
    return obj


def missing_names(text: str) -> list[str]:
    """Every problem with the names the doc ``text`` uses, as one line each."""
    problems = []
    for module, names in map_rows(text):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            problems.append(f"map row {module}: module cannot be imported ({exc})")
            continue
        problems += [
            f"map row {module}: {module}.{n} does not exist" for n in names if not hasattr(mod, n)
        ]
    for name in dotted_names(text):
        try:
            resolve(name)
        except (AttributeError, ModuleNotFoundError) as exc:
            problems.append(f"`{name}` does not resolve ({exc})")
    return problems


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_map_table_is_parsed(doc_text):
    rows = dict(map_rows(doc_text))
    assert len(rows) >= 20, f"the map table of {DOC.name} should list the package's modules"
    assert "TrainedModel" in rows["multimodal.models.run"]
    assert "RunFolder" in rows["multimodal.runfolder"]
    assert all(rows.values()), "every map row names at least one public name"


def test_every_name_in_the_doc_exists(doc_text):
    problems = missing_names(doc_text)
    assert not problems, f"{DOC.name} names what does not exist:\n  " + "\n  ".join(problems)


def test_checker_reports_missing_names():
    fake = (
        "## Map\n\n| module | what | names |\n|---|---|---|\n"
        "| `multimodal.runfolder` | x | `RunFolder`, `NoSuchThing` |\n"
        "| `multimodal.no_such_module` | x | `A` |\n\n"
        "Text with `multimodal.training.warmstart`, `training.dataset.collate`,\n"
        "`multimodal.models.run.load_run(RUN_DIR)` and `data.folds` (a config key).\n"
    )
    problems = missing_names(fake)
    assert any("NoSuchThing" in p for p in problems)
    assert any("no_such_module" in p for p in problems)
    assert any("multimodal.training.warmstart" in p for p in problems)
    assert any("multimodal.training.dataset.collate" in p for p in problems)
    assert not any("load_run" in p or "data.folds" in p for p in problems)
