"""A tiny trained run (clinical + genomics) for the analyses that read a run folder."""

from __future__ import annotations

import pytest

import multimodal

RUN = {
    "data": {"folds": 2, "modalities": ["clinical", "genomics"], "early_stopping_fraction": 0.0},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 8},
        "genomics": {"name": "snn", "out_dim": 8},
    },
    "fusion": {"name": "attention_gated", "dim": 8},
    "train": {"epochs": 3, "batch_size": 64, "refit": False, "progress": False},
    "eval": {"n_times": 6, "bootstrap": 0},
}


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("analysis_small")
    generate_cohort(out, n_patients=160, seed=4, with_images=False, n_genes=30)
    return multimodal.Cohort.load(out / "cohort.yaml")


@pytest.fixture(scope="session")
def run_dir(synthetic_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis_run")
    multimodal.train(RUN, cohort=synthetic_small, out=out)
    return out
