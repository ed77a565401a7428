"""Paths inside images.csv and bags.csv stay inside the cohort folder (issue #20, finding 8).

Resolved with symbolic links followed; ``allow_external_paths: true`` in the manifest lifts the
rule. The error names the table, row, patient and path, and says how to allow it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from multimodal.data import Cohort, load_manifest, validate
from multimodal.data.manifest import load_schema
from multimodal.exceptions import DataError, SchemaError


def _outside_image(tmp_path: Path) -> Path:
    """A valid NIfTI outside the cohort folder (so that only the location is wrong)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    path = folder / "secret.nii.gz"
    data = np.random.default_rng(0).random((8, 8, 8), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _point(cohort: Path, table: str, i: int, value: str) -> tuple[int, str]:
    frame = pd.read_csv(cohort / table, dtype={"patient_id": str})
    frame.loc[i, "path"] = value
    frame.to_csv(cohort / table, index=False)
    return i + 2, frame["patient_id"][i]


def _assert_refused(cohort: Path, table: str, row: int, pid: str, value: str) -> None:
    with pytest.raises(DataError) as info:
        Cohort.load(cohort)
    text = str(info.value)
    for needle in (table, f"row {row}", f"patient {pid}", value, "allow_external_paths"):
        assert needle in text, (needle, text)
    report = validate(cohort)
    found = [e for e in report.errors if table in e and value in e]
    assert len(found) == 1, report.errors
    assert "readable" not in found[0]  # refused before the file is opened


@pytest.mark.parametrize("value", ["../../etc/passwd", "../elsewhere/secret.nii.gz"])
def test_relative_path_escaping_the_cohort_is_refused(cohort_dir, tmp_path, tools, value):
    _outside_image(tmp_path)
    row, pid = _point(cohort_dir, "images.csv", 1, value)
    _assert_refused(cohort_dir, "images.csv", row, pid, value)
    tools.assert_one_line_error(tools.cli("validate", cohort_dir), value, "allow_external_paths")


def test_absolute_path_outside_is_refused_unless_allowed(cohort_dir, tmp_path, tools):
    outside = str(_outside_image(tmp_path))
    row, pid = _point(cohort_dir, "images.csv", 2, outside)
    _assert_refused(cohort_dir, "images.csv", row, pid, outside)
    tools.edit_manifest(cohort_dir, lambda d: d.__setitem__("allow_external_paths", True))
    cohort = Cohort.load(cohort_dir)
    assert outside in cohort.sources["ct"].table["path"].tolist()
    assert validate(cohort_dir, check_all_files=True).ok


def test_absolute_path_inside_the_cohort_is_fine(cohort_dir):
    rel = pd.read_csv(cohort_dir / "images.csv")["path"][0]
    _point(cohort_dir, "images.csv", 0, str((cohort_dir / rel).resolve()))
    assert validate(cohort_dir).ok


def test_symlink_leaving_the_cohort_is_refused(cohort_dir, tmp_path):
    outside = _outside_image(tmp_path)
    link = cohort_dir / "images" / "link.nii.gz"
    os.symlink(outside, link)
    row, pid = _point(cohort_dir, "images.csv", 3, "images/link.nii.gz")
    _assert_refused(cohort_dir, "images.csv", row, pid, "images/link.nii.gz")
    link.unlink()
    first = pd.read_csv(cohort_dir / "images.csv")["path"][0]
    os.symlink(cohort_dir / first, link)  # a link that stays inside is fine
    assert validate(cohort_dir).ok


def test_symlinked_image_folder_leaving_the_cohort_is_refused(cohort_dir, tmp_path):
    moved = tmp_path / "moved_images"
    shutil.move(cohort_dir / "images", moved)
    os.symlink(moved, cohort_dir / "images")
    with pytest.raises(DataError, match=r"images.csv.*allow_external_paths"):
        Cohort.load(cohort_dir)


def test_bag_path_escaping_the_cohort_is_refused(cohort_dir, tmp_path):
    target = tmp_path / "elsewhere.pt"
    shutil.copy(cohort_dir / pd.read_csv(cohort_dir / "bags.csv")["path"][0], target)
    row, pid = _point(cohort_dir, "bags.csv", 1, "../elsewhere.pt")
    _assert_refused(cohort_dir, "bags.csv", row, pid, "../elsewhere.pt")


def test_train_refuses_escaping_path_in_one_line(cohort_dir, tmp_path, tools):
    _outside_image(tmp_path)
    _point(cohort_dir, "images.csv", 1, "../elsewhere/secret.nii.gz")
    tools.assert_one_line_error(
        tools.train_cli(cohort_dir, tmp_path), "images.csv", "allow_external_paths"
    )


def test_allow_external_paths_is_in_the_manifest_schema(cohort_dir, tools):
    schema = load_schema("cohort_manifest")
    assert schema["properties"]["allow_external_paths"]["type"] == "boolean"
    assert load_manifest(cohort_dir / "cohort.yaml").allow_external_paths is False
    tools.edit_manifest(cohort_dir, lambda d: d.__setitem__("allow_external_paths", "yes"))
    with pytest.raises(SchemaError, match="allow_external_paths"):
        load_manifest(cohort_dir / "cohort.yaml")
