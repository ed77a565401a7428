"""Tiny trained runs shared by the explanation tests (trained once per session)."""

from __future__ import annotations

import pytest

import multimodal

#: every modality kind (CT, report text, feature bags), trained for two epochs: smoke tests
SMOKE = {
    "data": {"folds": 2, "image_size": 8, "genomics_max_features": 30},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 8},
        "genomics": {"name": "snn", "out_dim": 8},
        "report": {"name": "text_mlp", "out_dim": 8},
        "ct": {"name": "small_cnn", "out_dim": 8, "options": {"channels": [4, 8]}},
        "wsi": {"name": "attention_mil", "out_dim": 8},
    },
    "fusion": {"name": "attention_gated", "dim": 8},
    "train": {"epochs": 2, "batch_size": 32, "patience": 5, "progress": False},
    "eval": {"n_times": 4, "bootstrap": 0, "horizons": [12.0, 36.0]},
}

#: clinical + genomics with a strong genomic signal: known-answer tests of the attributions
TABULAR = {
    "data": {"folds": 2, "modalities": ["clinical", "genomics"], "early_stopping_fraction": 0.0},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 8},
        "genomics": {"name": "snn", "out_dim": 16, "options": {"hidden": 32, "dropout": 0.1}},
    },
    "fusion": {"name": "attention_gated", "dim": 16, "modality_dropout": 0.2},
    "train": {
        "epochs": 10,
        "batch_size": 64,
        "lr": 0.01,
        "weight_decay": 0.001,
        "refit": False,
        "progress": False,
    },
    "eval": {"n_times": 4, "bootstrap": 0},
}


@pytest.fixture(scope="session")
def smoke_cohort(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("explain_smoke")
    generate_cohort(out, n_patients=60, seed=1, image_size=8, with_feature_bags=True, bag_dim=16)
    return multimodal.Cohort.load(out / "cohort.yaml")


@pytest.fixture(scope="session")
def smoke_model(smoke_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain_smoke_run")
    multimodal.train(SMOKE, cohort=smoke_cohort, out=out)
    return multimodal.load_run(out)


@pytest.fixture(scope="session")
def smoke_explanation(smoke_model, smoke_cohort):
    return smoke_model.explain(smoke_cohort, saliency_limit=2, n_steps=8)


@pytest.fixture(scope="session")
def tabular_cohort(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("explain_tabular")
    generate_cohort(
        out,
        n_patients=300,
        seed=0,
        missing_rate=0.1,
        with_images=False,
        n_genes=60,
        signal_strength=3.0,
    )
    return multimodal.Cohort.load(out / "cohort.yaml")


@pytest.fixture(scope="session")
def tabular_model(tabular_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain_tabular_run")
    multimodal.train(TABULAR, cohort=tabular_cohort, out=out)
    return multimodal.load_run(out)


@pytest.fixture(scope="session")
def tabular_explanation(tabular_model, tabular_cohort):
    return tabular_model.explain(tabular_cohort, methods=["features"], n_steps=16)


#: configs/demo.yaml -- linear Cox members on clinical, genomics, report and frozen CT embeddings
#: -- shrunk to one fold on a tiny cohort. The deep residual must beat the linear members by a
#: C-index of 1 to be kept, which it cannot: it stays at zero, so every modality's only share in the
#: prediction is its linear member.
LINEAR_OVERRIDES = [
    "data.fold_indices=[0]",
    "data.image_size=8",
    "data.genomics_max_features=30",
    "members.penalties=[1.0]",
    # 60 patients: the second stage would drop the report term (negative weight); the tests need
    # it in the model to check how it is shared out
    "members.stack_nonnegative=false",
    "train.es_min_delta=1.0",
    "train.epochs=2",
    "train.refit=false",
    "train.progress=false",
    "eval.bootstrap=0",
]


@pytest.fixture(scope="session")
def linear_cohort(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("explain_linear")
    generate_cohort(out, n_patients=60, seed=0, image_size=8, n_genes=40)
    return multimodal.Cohort.load(out / "cohort.yaml")


@pytest.fixture(scope="session")
def linear_model(linear_cohort, tmp_path_factory):
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    out = tmp_path_factory.mktemp("explain_linear_run")
    multimodal.train(config, cohort=linear_cohort, out=out, overrides=LINEAR_OVERRIDES)
    return multimodal.load_run(out)
