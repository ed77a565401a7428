"""Files that ship with the package: the example configs and the JSON Schemas of the tables.

Their home is the top level of the source tree (``configs/``, ``data_schemas/``). A wheel carries
the same files inside the package, as ``multimodal/_configs/`` and ``multimodal/_schemas/``
(``[tool.setuptools.package-dir]`` in ``pyproject.toml``). :func:`shipped_dir` finds whichever is
there, so a wheel, an editable install and a source checkout all work from any current directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["SHIPPED", "shipped_dir"]

#: Source-tree folder -> its name inside the installed package (a wheel).
SHIPPED: dict[str, str] = {"configs": "_configs", "data_schemas": "_schemas"}


def shipped_dir(name: Literal["configs", "data_schemas"]) -> Path:
    """The folder of the shipped ``configs/`` or ``data_schemas/``.

    Inside the installed package first (a wheel), then next to the package (a source checkout or
    an editable install). When neither exists, the in-package path is returned, so that the
    caller's "file not found" message names where a wheel would have put it.
    """
    package = Path(__file__).resolve().parent
    inside = package / SHIPPED[name]
    if inside.is_dir():
        return inside
    source = package.parent / name
    return source if source.is_dir() else inside
