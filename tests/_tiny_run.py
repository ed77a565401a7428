"""One builder of the tiny trained run the dashboard and report tests share: a synthetic cohort
laid out as the demo does (``<root>/cohort``) and a two-fold, two-epoch run on it (``<root>/run``)
with clinical covariates, genomics, report text and 8^3 CT volumes."""

from __future__ import annotations

from pathlib import Path


def tiny_config(batch_size: int) -> dict:
    """The tiny run's config (small encoders, two folds, two epochs, no bootstrap)."""
    return {
        "data": {"folds": 2, "image_size": 8, "genomics_max_features": 30},
        "encoders": {
            "clinical": {"name": "clinical_mlp", "out_dim": 4},
            "genomics": {"name": "snn", "out_dim": 4},
            "report": {"name": "text_mlp", "out_dim": 4},
            "ct": {"name": "small_cnn", "out_dim": 4},
        },
        "fusion": {"name": "attention_gated", "dim": 4},
        "train": {
            "epochs": 2,
            "batch_size": batch_size,
            "patience": 5,
            "progress": False,
            "refit": False,
        },
        "eval": {"n_times": 4, "bootstrap": 0},
    }


def train_tiny_run(root: Path, n_patients: int, seed: int, batch_size: int) -> Path:
    """``root/cohort`` (``n_patients`` synthetic patients of ``seed``) and ``root/run`` trained on
    it; returns the run folder."""
    import multimodal
    from multimodal.data.synth import generate_cohort

    generate_cohort(
        root / "cohort",
        n_patients=n_patients,
        seed=seed,
        missing_rate=0.2,
        image_size=8,
        n_genes=40,
    )
    cohort = multimodal.Cohort.load(root / "cohort" / "cohort.yaml")
    multimodal.train(tiny_config(batch_size), cohort=cohort, out=root / "run")
    return root / "run"
