"""docs/tutorial.py runs top to bottom (executed, not just rendered), on a tiny synthetic cohort
and, where ../shared/data is present (always under CI=true), the TCGA LUAD -> LUSC part."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MULTIMODAL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def test_tutorial_runs_top_to_bottom(tmp_path, monkeypatch):
    tcga = SHARED_DATA / "tcga"
    if not tcga.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing")
        tcga = None
    monkeypatch.setenv("TUTORIAL_OUT", str(tmp_path))
    monkeypatch.setenv("TUTORIAL_PATIENTS", "160")
    monkeypatch.setenv("TUTORIAL_EPOCHS", "4")
    monkeypatch.setenv("TUTORIAL_TCGA", str(tcga) if tcga else "")
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "docs" / "tutorial.py"), run_name="__main__")
    assert (tmp_path / "run" / "explanations" / "modality_contributions.csv").is_file()
    assert (tmp_path / "km_by_group.png").is_file()
    km = pd.read_csv(tmp_path / "km_by_group.csv")
    assert list(km["label"]) == ["low", "intermediate", "high"]
    subgroups = pd.read_csv(tmp_path / "subgroups.csv")
    assert {"flag", "c_index", "calibration_error"} <= set(subgroups.columns)
    if tcga is not None:
        validation = pd.read_csv(tmp_path / "luad_to_lusc.csv")
        assert set(validation["cohort"]) == {"LUAD", "LUSC", "drift"}
