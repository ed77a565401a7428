"""Small on-disk cohorts broken on purpose, and a way to run the CLI on them.

``cohort_dir`` is a fresh copy of one synthetic manifest cohort (40 patients, 8^3 NIfTI images,
8-d feature bags), written once per session; ``tools`` holds the helpers: ``cli`` (run the CLI
in-process), ``train_cli``, ``assert_one_line_error``, ``edit_manifest``, ``edit_table``,
``write_tcga`` (a tiny TCGA-layout folder) and ``write_folds``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner, Result

from multimodal.cli import app

#: a config that trains in seconds on the synthetic cohort (used by the `train` CLI tests)
TINY_TRAIN = {
    "data": {"folds": 2, "image_size": 8, "genomics_max_features": 20},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "ct": {"name": "small_cnn", "out_dim": 4},
        "wsi": {"name": "attention_mil", "out_dim": 4},
    },
    "fusion": {"name": "attention_gated", "dim": 4},
    "train": {"epochs": 1, "batch_size": 16, "patience": 5, "progress": False},
    "eval": {"n_times": 3, "bootstrap": 0},
}


@pytest.fixture(scope="session")
def synth_base(tmp_path_factory) -> Path:
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("reliability") / "cohort"
    generate_cohort(out, n_patients=40, seed=0, image_size=8, with_feature_bags=True, bag_dim=8)
    return out


@pytest.fixture
def cohort_dir(synth_base: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic cohort (cohort.yaml, images/, bags/, tables)."""
    dst = tmp_path / "cohort"
    shutil.copytree(synth_base, dst)
    return dst


def cli(*args: object) -> Result:
    """Run ``multimodal ARGS`` in-process; output holds stdout and stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def train_cli(cohort: Path, tmp_path: Path, modalities: str = "[clinical,ct,wsi]") -> Result:
    """``multimodal train`` with :data:`TINY_TRAIN` on ``cohort`` (run folder under tmp_path)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_TRAIN))
    return cli(
        "train",
        "--config",
        config,
        "--cohort",
        cohort,
        "--out",
        tmp_path / "run",
        "--set",
        f"data.modalities={modalities}",
    )


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit code 2, no traceback, exactly one ``error:`` line containing every needle."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def edit_manifest(cohort: Path, fn: Callable[[dict], None]) -> None:
    path = cohort / "cohort.yaml"
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def edit_table(path: Path, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
    frame = pd.read_csv(path, dtype={"patient_id": str})
    out = fn(frame)
    (frame if out is None else out).to_csv(path, index=False)


def write_tcga(root: Path, n: int = 12, edit: Callable[[pd.DataFrame], None] | None = None) -> Path:
    """A TCGA-layout folder ``root/xyz`` (clinical.csv, genomics.csv.gz); returns the folder."""
    rng = np.random.default_rng(0)
    ids = [f"TCGA-XY-{i:04d}" for i in range(n)]
    event = np.array([1, 0] * (n // 2))
    clinical = pd.DataFrame(
        {
            "patient_id": ids,
            "survival_months": rng.uniform(2, 80, n).round(2),
            "event": event,
            "censorship": 1 - event,
            "age": rng.integers(40, 80, n),
            "sex": rng.choice(["F", "M"], n),
            "stage": rng.choice(["I", "II", "III"], n),
        }
    )
    if edit is not None:
        edit(clinical)
    folder = root / "xyz"
    folder.mkdir(parents=True)
    clinical.to_csv(folder / "clinical.csv", index=False)
    genomics = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"G{j}_rnaseq" for j in range(4)])
    genomics.insert(0, "patient_id", ids)
    genomics.to_csv(folder / "genomics.csv.gz", index=False)
    return folder


def write_folds(folder: Path, folds: list[dict[str, list[str]]]) -> Path:
    """fold_<k>.csv files (patient_id, split) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, fold in enumerate(folds):
        rows = [(pid, split) for split in ("train", "val") for pid in fold.get(split, [])]
        pd.DataFrame(rows, columns=["patient_id", "split"]).to_csv(
            folder / f"fold_{k}.csv", index=False
        )
    return folder


@pytest.fixture
def tools() -> SimpleNamespace:
    """The helpers above, for the test modules (which should not import a conftest)."""
    return SimpleNamespace(
        cli=cli,
        error_lines=error_lines,
        train_cli=train_cli,
        assert_one_line_error=assert_one_line_error,
        edit_manifest=edit_manifest,
        edit_table=edit_table,
        write_tcga=write_tcga,
        write_folds=write_folds,
    )
