"""Helpers shared by the benchmark scripts: the CPU's name and rewriting one section of
docs/benchmarks.md.

The scripts run as ``python bench/<script>.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

__all__ = ["cpu_name", "machine_line", "replace_section", "write_section"]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(seconds: float) -> str:
    """``Machine: <cpu>, <n> cores, CPU only, torch threads <OMP_NUM_THREADS>; Python ...; date
    ...; wall time <m> min.`` for a benchmark's table header."""
    return (
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, CPU only, torch threads "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')}; Python {platform.python_version()}; "
        f"date {dt.date.today().isoformat()}; wall time {seconds / 60:.1f} min."
    )


def replace_section(text: str, section: str, heading: str | None = None) -> str:
    """``text`` with its ``heading`` section (up to the next level-2 heading outside code fences)
    replaced by ``section``, or ``section`` appended when absent. ``heading`` defaults to the
    first line of ``section``."""
    heading = section.splitlines()[0] if heading is None else heading
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    end, fenced = len(lines), False
    for i in range(start + 1, len(lines)):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and lines[i].startswith("## "):
            end = i
            break
    tail = ["", *lines[end:]] if end < len(lines) else []
    return "\n".join(lines[:start] + section.rstrip("\n").splitlines() + tail) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the section of ``path`` (docs/benchmarks.md) that ``section`` heads,
    keeping the others."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, section))
