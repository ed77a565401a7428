"""A tiny trained run (and its cohort, laid out as the demo does) shared by the dashboard tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._tiny_run import train_tiny_run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """``<tmp>/cohort`` (44 synthetic patients, 8^3 CT) and ``<tmp>/run`` trained on it."""
    return train_tiny_run(tmp_path_factory.mktemp("dash"), n_patients=44, seed=5, batch_size=32)


@pytest.fixture(scope="session")
def tiny_cohort(tiny_run):
    import multimodal

    return multimodal.Cohort.load(tiny_run.parent / "cohort" / "cohort.yaml")


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    from multimodal.models.run import load_run

    return load_run(tiny_run)


@pytest.fixture(scope="session")
def landmark_run(tmp_path_factory) -> Path:
    """A one-fold landmark run (``data.landmark``, horizon 24 months) on the tiny longitudinal
    cohort of ``tests/longitudinal``: ``<tmp>/cohort`` (80 patients, ``marker`` and ``noise``
    measured every ~6 months) and ``<tmp>/run``. Trains in seconds."""
    import multimodal
    from tests.longitudinal.conftest import TINY_CONFIG, write_cohort

    root = tmp_path_factory.mktemp("dash-landmark")
    manifest = write_cohort(root / "cohort")
    config = dict(TINY_CONFIG, data={**TINY_CONFIG["data"], "cohort": str(manifest)})
    multimodal.train(config, out=root / "run")
    return root / "run"
