"""A tiny trained run (and its cohort, laid out as the demo does) shared by the report tests:
90 synthetic patients with clinical covariates, genomics, report text and 8^3 CT volumes, two
folds, two epochs. The clinical linear member carries the signal the checks rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._tiny_run import train_tiny_run


@pytest.fixture(scope="session")
def small_sizes() -> dict[str, tuple[float, ...]]:
    """Few sizes per perturbation kind: the checks need one of each, not the default ladder."""
    return {"noise": (0.1,), "sentences": (1,), "image_noise": (0.1,), "image_shift": (0.1,)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """``<tmp>/cohort`` (90 synthetic patients, 8^3 CT) and ``<tmp>/run`` trained on it."""
    return train_tiny_run(tmp_path_factory.mktemp("report"), n_patients=90, seed=3, batch_size=64)


@pytest.fixture(scope="session")
def tiny_cohort(tiny_run):
    import multimodal

    return multimodal.Cohort.load(tiny_run.parent / "cohort" / "cohort.yaml")


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    from multimodal.models.run import load_run

    return load_run(tiny_run)


@pytest.fixture(scope="session")
def report_html(tiny_run) -> Path:
    """The report of the tiny run at its default place, RUN_DIR/report.html."""
    from multimodal.reporting import build_report

    return build_report(tiny_run, n_boot=20)


@pytest.fixture(scope="session")
def one_fold_run(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's config with ``data.fold_indices: [0]`` on the same cohort: 45 validation
    patients, one fold (no SD over folds; bootstrap resamples small enough to lack cases)."""
    import multimodal
    from tests._tiny_run import tiny_config

    config = tiny_config(64)
    config["data"]["fold_indices"] = [0]
    out = tmp_path_factory.mktemp("one_fold") / "run"
    cohort = multimodal.Cohort.load(tiny_run.parent / "cohort" / "cohort.yaml")
    multimodal.train(config, cohort=cohort, out=out)
    return out
