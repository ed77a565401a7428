"""Loading a script of ``bench/`` as a module, the way ``python bench/<name>.py`` runs it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


@contextmanager
def bench_module(name: str) -> Iterator[ModuleType]:
    """``bench/<name>.py`` as module ``name``, with ``bench/`` on ``sys.path`` (for ``_common`` and
    the scripts that import each other) and in ``sys.modules`` (dataclasses look their module up)
    while the context lasts; afterwards every module of ``bench/`` it imported is gone again."""
    before = set(sys.modules)
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for key in set(sys.modules) - before:
            origin = getattr(sys.modules[key], "__file__", None) or ""
            if key == name or Path(origin).parent == BENCH:
                del sys.modules[key]
        sys.path.remove(str(BENCH))
