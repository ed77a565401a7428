"""Fixtures for the tuning tests: a tiny tabular cohort and a fast stand-in for ``train``."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import multimodal
from multimodal.training.trainer import EpochInfo

ROOT = Path(__file__).resolve().parents[2]
TINY_TUNE = ROOT / "configs" / "tune" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_tune_file() -> Path:
    return TINY_TUNE


@pytest.fixture(scope="session")
def tiny_cohort_path(tmp_path_factory) -> Path:
    """60 patients, clinical + genomics + report (no images): a real trial takes seconds."""
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("tune-cohort")
    generate_cohort(out, n_patients=60, seed=5, with_images=False, n_genes=30)
    return out / "cohort.yaml"


@pytest.fixture(scope="session")
def tiny_cohort(tiny_cohort_path):
    return multimodal.Cohort.load(tiny_cohort_path)


def fake_value(cfg) -> float:
    """A deterministic C-index that rewards a learning rate near 3e-3 and the concat fusion."""
    closeness = math.exp(-((math.log10(cfg.train.lr) + 2.5) ** 2))
    return 0.5 + 0.2 * closeness + (0.05 if cfg.fusion.name == "concat" else 0.0)


class FakeTrain:
    """Stands in for :func:`multimodal.train`: same signature, calls the epoch callbacks with a
    rising early-stopping C-index, returns metrics; records every call."""

    def __init__(self, fail_when=None, nan_when=None, interrupt_at=None, delay=0.0):
        self.calls = []
        self.delay = delay
        self.fail_when = fail_when or (lambda cfg: False)
        self.nan_when = nan_when or (lambda cfg: False)
        self.interrupt_at = interrupt_at

    def __call__(self, cfg, *, cohort, out, callbacks=()):
        self.calls.append(SimpleNamespace(cfg=cfg, cohort=cohort, out=Path(out)))
        time.sleep(self.delay)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        (Path(out) / "checkpoints").mkdir(parents=True, exist_ok=True)
        (Path(out) / "model").mkdir(parents=True, exist_ok=True)
        if self.fail_when(cfg):
            raise RuntimeError("boom: this configuration cannot train")
        value = fake_value(cfg)
        for fold in range(cfg.data.folds):
            for epoch in range(1, cfg.train.epochs + 1):
                score = 0.5 + (value - 0.5) * epoch / cfg.train.epochs
                for cb in callbacks:
                    cb(EpochInfo(fold, epoch, 1.0, score, score))
        c = float("nan") if self.nan_when(cfg) else value
        metrics = {"c_index": c, "c_index_std": 0.01, "ibs": 0.3 - (value - 0.5) / 2}
        return SimpleNamespace(metrics=metrics)


@pytest.fixture
def fake_train(monkeypatch):
    """Install a :class:`FakeTrain`; ``fake_train.set(**kwargs)`` swaps in a new one and returns
    it, ``fake_train.current`` is the one in use."""
    holder = SimpleNamespace(current=FakeTrain())

    def dispatch(*args, **kwargs):
        return holder.current(*args, **kwargs)

    def set_(**kwargs):
        holder.current = FakeTrain(**kwargs)
        return holder.current

    monkeypatch.setattr("multimodal.tuning.objective.train", dispatch)
    holder.set = set_
    return holder
