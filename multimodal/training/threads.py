"""How many intra-op threads training uses (``train.threads``).

``auto`` takes the thread budget of this process -- ``OMP_NUM_THREADS`` when it is set, else the
CPUs this process may run on (its affinity mask, which ``taskset``, cgroups-aware launchers and
SLURM set; :func:`os.cpu_count` where the platform has none) -- and caps it for small models: a
model with fewer than :data:`SMALL_MODEL_PARAMETERS` parameters trained on the CPU uses one
thread. Such a model's operations are too small to split, and a second thread that has to wait
for a busy core makes each step many times slower (40x measured with two threads on a two-core
machine whose other core was busy). An explicit integer is used as given.

Threads are set only while training runs (:func:`training_threads` restores the previous count)
and only intra-op threads (:func:`torch.set_num_threads`); inter-op threads are left alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch

__all__ = [
    "SMALL_MODEL_PARAMETERS",
    "apply_threads",
    "available_cpus",
    "resolve_threads",
    "training_threads",
]

log = logging.getLogger(__name__)

#: Below this many parameters a model trained on the CPU gets one thread under ``auto``.
SMALL_MODEL_PARAMETERS = 1_000_000


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the platform has one, else
    :func:`os.cpu_count` (at least 1)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return max(1, len(getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _omp_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a positive integer (the first of a nested list such as ``4,2``);
    None when unset, or when it is not a positive integer (logged)."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw.split(",")[0])
    except ValueError:
        n = 0
    if n < 1:
        log.warning("OMP_NUM_THREADS=%r is not a positive integer; ignored", raw)
        return None
    return n


def resolve_threads(
    setting: int | Literal["auto"],
    n_parameters: int | None = None,
    on_cpu: bool = True,
) -> int:
    """The number of intra-op threads for ``train.threads = setting``.

    Parameters
    ----------
    setting : a positive integer (used as given) or ``"auto"``.
    n_parameters : the model's parameter count, when known; under ``auto`` a model with fewer
        than :data:`SMALL_MODEL_PARAMETERS` parameters that trains on the CPU gets one thread.
    on_cpu : whether the model trains on the CPU (on an accelerator the small-model cap does not
        apply: the CPU threads then only feed it).

    Returns
    -------
    int
        ``setting`` when it is an integer; under ``auto`` ``OMP_NUM_THREADS`` when set, else the
        CPUs of this process's affinity mask, capped at 1 for a small model on the CPU.
    """
    if setting != "auto":
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ValueError(f"train.threads must be a positive integer or 'auto'; got {setting!r}")
        return setting
    budget = _omp_threads() or available_cpus()
    if on_cpu and n_parameters is not None and n_parameters < SMALL_MODEL_PARAMETERS:
        return 1
    return budget


def apply_threads(n: int) -> None:
    """Set torch's intra-op threads to ``n`` (inter-op threads are left alone)."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextmanager
def training_threads(
    setting: int | Literal["auto"],
    n_parameters: int | None = None,
    on_cpu: bool = True,
) -> Iterator[int]:
    """Use :func:`resolve_threads`'s count inside the block and restore the previous count after
    it, so that nothing outside training sees a changed setting."""
    previous = torch.get_num_threads()
    n = resolve_threads(setting, n_parameters, on_cpu)
    apply_threads(n)
    try:
        yield n
    finally:
        apply_threads(previous)
