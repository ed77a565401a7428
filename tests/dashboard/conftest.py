"""A tiny trained run (and its cohort, laid out as the demo does) shared by the dashboard tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {
    "data": {"folds": 2, "image_size": 8, "genomics_max_features": 30},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "genomics": {"name": "snn", "out_dim": 4},
        "report": {"name": "text_mlp", "out_dim": 4},
        "ct": {"name": "small_cnn", "out_dim": 4},
    },
    "fusion": {"name": "attention_gated", "dim": 4},
    "train": {"epochs": 2, "batch_size": 32, "patience": 5, "progress": False, "refit": False},
    "eval": {"n_times": 4, "bootstrap": 0},
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """``<tmp>/cohort`` (44 synthetic patients, 8^3 CT) and ``<tmp>/run`` trained on it."""
    import multimodal
    from multimodal.data.synth import generate_cohort

    root = tmp_path_factory.mktemp("dash")
    generate_cohort(
        root / "cohort", n_patients=44, seed=5, missing_rate=0.2, image_size=8, n_genes=40
    )
    cohort = multimodal.Cohort.load(root / "cohort" / "cohort.yaml")
    multimodal.train(TINY, cohort=cohort, out=root / "run")
    return root / "run"


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
