"""What a person sees while the package works: progress, and each warning once per run.

- :func:`progress` gives a tqdm bar where one can be drawn (standard error is a terminal, or a
  Jupyter notebook) and otherwise a :class:`PlainProgress`, which logs a plain line now and then
  (never ``\\r`` frames): ``fold 2: 10/50 epochs, loss 2.61, hold-out C 0.712, 3.1 s/epoch, about
  2 min left``. Plain lines go through :mod:`logging` (logger ``multimodal.progress``), so the
  library prints nothing unless the program configured logging, as the command line does.
- :func:`warn_once` logs a message the first time it is seen in a run. ``train`` starts a run
  (:func:`start_run`); a job that trains several models (the demo) holds one
  :func:`run_scope` around them all, so each thing is said once for the whole job.

The time between two plain lines is :data:`PLAIN_INTERVAL` seconds, or the environment variable
``MULTIMODAL_PROGRESS_INTERVAL``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = [
    "PLAIN_INTERVAL",
    "PlainProgress",
    "is_tty",
    "progress",
    "reset_once",
    "run_scope",
    "start_run",
    "warn_once",
]

log = logging.getLogger("multimodal.progress")

#: Seconds between two plain progress lines (the last line is always written).
PLAIN_INTERVAL = 30.0


def is_tty(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: standard error) is a terminal that can redraw a bar."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_notebook() -> bool:
    """A Jupyter kernel, where tqdm draws a widget."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # any failure means: not a notebook
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


def _interval() -> float:
    raw = os.environ.get("MULTIMODAL_PROGRESS_INTERVAL")
    try:
        return max(0.0, float(raw)) if raw else PLAIN_INTERVAL
    except ValueError:
        return PLAIN_INTERVAL


def _duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min``, ``1.5 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class PlainProgress:
    """Progress as plain log lines: one after every ``interval`` seconds of work and one at the end.

    The interface is the part of tqdm's the package uses: ``update``, ``set_postfix``, ``close``,
    and use as a context manager. Postfix values that are not finite numbers (a C-index without a
    validation set) are left out.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "step",
        initial: int = 0,
        interval: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start = int(initial)
        self.interval = _interval() if interval is None else float(interval)
        self.log = logger or log
        self.postfix: dict[str, str] = {}
        self.t0 = self.last = time.perf_counter()
        self.closed = False

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Figures shown after the count (``name value``); non-finite numbers are dropped."""
        self.postfix = {}
        for key, value in {**(ordered_dict or {}), **kwargs}.items():
            if isinstance(value, float) and not math.isfinite(value):
                continue
            text = str(value)
            if text.strip().lower() in ("nan", "inf", "-inf", "+inf"):
                continue
            self.postfix[key] = text

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.log.info("%s", self.line())

    def _count(self) -> str:
        of = f"/{self.total}" if self.total else ""
        return f"{self.n}{of} {self.unit}s"

    def _rate(self, elapsed: float) -> str:
        done = self.n - self.start
        if done <= 0 or elapsed <= 0:
            return ""
        per = elapsed / done
        if per >= 0.1:
            return f"{_duration(per)}/{self.unit}"
        speed = 1 / per
        return f"{speed:.1f} {self.unit}s/s" if speed < 100 else f"{speed:,.0f} {self.unit}s/s"

    def line(self, final: bool = False) -> str:
        """The line :meth:`update` (or, with ``final``, :meth:`close`) writes."""
        elapsed = time.perf_counter() - self.t0
        parts = [self._count(), *(f"{k} {v}" for k, v in self.postfix.items())]
        rate = self._rate(elapsed)
        if final:
            parts.append(f"{_duration(elapsed)}" + (f" ({rate})" if rate else ""))
        else:
            parts.append(rate)
            done = self.n - self.start
            if self.total and done > 0 and self.n < self.total:
                left = elapsed / done * (self.total - self.n)
                parts.append(f"about {_duration(left)} left")
        return f"{self.desc}: {'done, ' if final else ''}{', '.join(p for p in parts if p)}"

    def close(self) -> None:
        """Write the last line: what was done, in how long."""
        if self.closed:
            return
        self.closed = True
        self.log.info("%s", self.line(final=True))


class _Silent:
    """A progress that shows nothing (``progress(enabled=False)``)."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


def progress(
    total: int | None,
    desc: str,
    unit: str = "step",
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
) -> Any:
    """A progress display: a tqdm bar on a terminal or in a notebook, plain lines otherwise.

    Parameters
    ----------
    total : number of units of work (None: unknown).
    desc : what is being done (``"fold 2"``, ``"text embeddings"``).
    unit : one unit of work, singular (``"epoch"``, ``"text"``, ``"image"``).
    initial : units already done (a resumed fit).
    enabled : False gives a display that shows nothing.
    leave : keep the finished bar on the terminal.

    Returns
    -------
    An object with ``update(n)``, ``set_postfix(mapping or **figures)``, ``close()``; it is also a
    context manager.
    """
    if not enabled:
        return _Silent()
    if _in_notebook() or is_tty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave)
    return PlainProgress(total, desc, unit=unit, initial=initial)


# --------------------------------------------------------------------------- warnings once per run
_lock = threading.Lock()
_seen: set[Any] = set()
_depth = 0


def warn_once(
    logger: logging.Logger,
    message: str,
    *args: Any,
    key: Any = None,
    level: int = logging.WARNING,
) -> bool:
    """Log ``message % args`` on ``logger`` unless it (or ``key``) was logged before in this run.

    ``key`` groups messages that differ in their details but say the same thing (default: the
    logger's name and the formatted message). Returns whether the message was logged.
    """
    text = message % args if args else message
    k = (logger.name, text) if key is None else key
    with _lock:
        if k in _seen:
            return False
        _seen.add(k)
    logger.log(level, "%s", text)
    return True


def reset_once() -> None:
    """Forget every message :func:`warn_once` has logged."""
    with _lock:
        _seen.clear()


def start_run() -> None:
    """A run starts (``train`` calls this): forget the messages logged so far, unless an outer
    :func:`run_scope` holds them."""
    with _lock:
        if _depth == 0:
            _seen.clear()


@contextmanager
def run_scope() -> Iterator[None]:
    """One run: :func:`warn_once` logs each message once inside it.

    Scopes nest; only the outermost one starts afresh, so a job that trains several models (the
    demo) says each thing once, not once per model.
    """
    global _depth
    with _lock:
        if _depth == 0:
            _seen.clear()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
