"""`validate` catches what `train` would reject or be corrupted by, and `train` says it in one line.

Issue #20, findings 7 and 6: images and feature bags are decoded (a seeded sample by default,
every file with ``--all-files``), fold files are checked, implausible time units, a censorship
column equal to the event column, non-finite genomic values, modalities without patients and
cohorts with one event are reported -- each message names the file, row, patient and column.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from multimodal.data import Cohort, validate
from multimodal.exceptions import DataError


def _row(cohort: Path, table: str, i: int = 1) -> tuple[int, str, str]:
    """(row number as in messages, patient_id, path as written) of data row ``i`` of a table."""
    frame = pd.read_csv(cohort / table, dtype={"patient_id": str})
    return i + 2, frame["patient_id"][i], frame["path"][i]


def _save_nifti(path: Path, data: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def _errors_with(report, *needles: str) -> list[str]:
    return [e for e in report.errors if all(n in e for n in needles)]


# -- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_is_an_error(cohort_dir, tools, suffix):
    row, pid, rel = _row(cohort_dir, "images.csv")
    if suffix == ".nii":  # an uncompressed copy, named in images.csv
        image = nib.load(str(cohort_dir / rel))
        new = rel.replace(".nii.gz", ".nii")
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), np.eye(4)), str(cohort_dir / new))
        tools.edit_table(
            cohort_dir / "images.csv",
            lambda f: f.replace({"path": {rel: new}}).drop(columns="format"),
        )
        rel = new
    data = (cohort_dir / rel).read_bytes()
    (cohort_dir / rel).write_bytes(data[: int(len(data) * 0.8)])  # the header stays readable
    report = validate(cohort_dir, sample=0)  # no decoding: the header check sees the truncation
    found = _errors_with(report, "images.csv", f"row {row}", f"patient {pid}", rel, "'path'")
    assert found and "truncated" in found[0], report.errors


@pytest.mark.parametrize("shape", [(8, 8, 8, 2), (8, 8)], ids=["4d", "2d"])
def test_image_dimensions_must_match_spatial_dims(cohort_dir, tools, shape):
    row, pid, rel = _row(cohort_dir, "images.csv", 2)
    _save_nifti(cohort_dir / rel, np.random.default_rng(0).random(shape, dtype=np.float32))
    report = validate(cohort_dir)
    found = _errors_with(report, "images.csv", f"row {row}", f"patient {pid}", rel, "'path'")
    assert len(found) == 1, report.errors
    assert str(shape) in found[0] and "spatial_dims" in found[0] and "3" in found[0]
    tools.assert_one_line_error(tools.cli("validate", cohort_dir), pid, rel)


def test_4d_nifti_in_3d_cohort_is_one_line_error_in_train(cohort_dir, tools, tmp_path):
    _, pid, rel = _row(cohort_dir, "images.csv", 2)
    _save_nifti(cohort_dir / rel, np.random.default_rng(0).random((8, 8, 8, 2), np.float32))
    line = tools.assert_one_line_error(
        tools.train_cli(cohort_dir, tmp_path), f"patient {pid}", Path(rel).name, "'path'"
    )
    assert "(8, 8, 8, 2)" in line and "spatial_dims" in line


@pytest.mark.parametrize("kind", ["nan", "constant"])
def test_nan_and_constant_images_are_errors(cohort_dir, tools, kind):
    row, pid, rel = _row(cohort_dir, "images.csv", 5)
    data = np.full((8, 8, 8), 40.0, np.float32)
    if kind == "nan":
        data = np.random.default_rng(0).random((8, 8, 8), dtype=np.float32)
        data[2, 3, 4] = np.nan
    _save_nifti(cohort_dir / rel, data)
    report = validate(cohort_dir, check_all_files=True)
    word = "NaN" if kind == "nan" else "constant"
    found = _errors_with(report, "images.csv", f"row {row}", f"patient {pid}", rel, word)
    assert len(found) == 1, report.errors
    tools.assert_one_line_error(tools.cli("validate", cohort_dir, "--all-files"), pid, word)


def test_files_are_decoded_in_a_seeded_sample_or_all(cohort_dir):
    table = pd.read_csv(cohort_dir / "images.csv")
    for rel in table["path"]:  # every image holds a NaN: the count shows how many were decoded
        data = np.ones((8, 8, 8), np.float32)
        data[0, 0, 0] = np.nan
        _save_nifti(cohort_dir / rel, data)
    n = len(table)
    assert n > 20

    def decoded(report) -> int:
        (message,) = _errors_with(report, "NaN")
        return int(re.search(r"(\d+) image\(s\)", message).group(1))

    assert decoded(validate(cohort_dir)) == 20
    assert decoded(validate(cohort_dir, sample=5)) == 5
    assert decoded(validate(cohort_dir, check_all_files=True)) == n
    assert validate(cohort_dir, sample=5).errors == validate(cohort_dir, sample=5).errors


# -- feature bags ----------------------------------------------------------------------------


def test_bag_with_another_feature_dimension(cohort_dir, tools, tmp_path):
    row, pid, rel = _row(cohort_dir, "bags.csv", 3)
    torch.save(torch.randn(5, 6), cohort_dir / rel)
    report = validate(cohort_dir, check_all_files=True)
    found = _errors_with(report, "bags.csv", f"row {row}", f"patient {pid}", rel, "'path'")
    assert len(found) == 1, report.errors
    assert "feature dimension 6" in found[0] and "8" in found[0]
    tools.assert_one_line_error(tools.cli("validate", cohort_dir, "--all-files"), pid, rel)
    line = tools.assert_one_line_error(
        tools.train_cli(cohort_dir, tmp_path), f"patient {pid}", Path(rel).name, "'path'"
    )
    assert "feature dimension 6" in line


@pytest.mark.parametrize("kind", ["garbage", "nan", "cube"])
def test_unreadable_or_bad_bags_are_errors(cohort_dir, kind):
    row, pid, rel = _row(cohort_dir, "bags.csv", 4)
    if kind == "garbage":
        (cohort_dir / rel).write_bytes(b"not a torch file" * 10)
    elif kind == "nan":
        torch.save(torch.full((4, 8), float("nan")), cohort_dir / rel)
    else:
        torch.save(torch.zeros(2, 3, 8), cohort_dir / rel)
    report = validate(cohort_dir, check_all_files=True)
    assert _errors_with(report, "bags.csv", f"row {row}", f"patient {pid}", rel), report.errors


# -- fold files ------------------------------------------------------------------------------


def test_manifest_fold_files_report_every_problem(cohort_dir, tools):
    ids = pd.read_csv(cohort_dir / "patients.csv")["patient_id"].tolist()
    half = len(ids) // 2
    good = {"train": ids[:half], "val": ids[half:]}
    tools.write_folds(
        cohort_dir / "splits",
        [
            {"train": [*ids[:half], "GHOST-1"], "val": ids[half:]},  # unknown patient
            {"train": ids[:half], "val": [*ids[half:], ids[0]]},  # ids[0] in train and val
            {"train": ids, "val": []},  # empty val fold
            good,
        ],
    )
    tools.edit_manifest(cohort_dir, lambda d: d.__setitem__("splits", {"folds_dir": "splits"}))
    report = validate(cohort_dir)
    assert _errors_with(report, "splits/fold_0.csv", "GHOST-1"), report.errors
    assert _errors_with(report, "splits/fold_1.csv", ids[0], "train and val"), report.errors
    assert _errors_with(report, "splits/fold_2.csv", "no val"), report.errors
    assert not _errors_with(report, "fold_3.csv")
    assert tools.cli("validate", cohort_dir).exit_code == 2


def test_tcga_fold_files_are_checked(tmp_path, tools):
    folder = tools.write_tcga(tmp_path)
    ids = pd.read_csv(folder / "clinical.csv")["patient_id"].tolist()
    tools.write_folds(
        folder / "splits" / "mine",
        [
            {"train": [*ids[:6], "TCGA-ZZ-9999"], "val": ids[6:]},
            {"train": ids[6:], "val": [*ids[:6], ids[6]]},
        ],
    )
    report = validate(folder)
    assert _errors_with(report, "mine/fold_0.csv", "TCGA-ZZ-9999"), report.errors
    assert _errors_with(report, "mine/fold_1.csv", ids[6], "train and val"), report.errors


# -- outcomes ------------------------------------------------------------------------------


def test_one_event_is_caught_before_training(cohort_dir, tools, tmp_path):
    def one_event(f):
        first = int(np.flatnonzero(f["event"].to_numpy() == 1)[0])
        f["event"] = 0
        f.loc[first, "event"] = 1
        f["pfs_event"] = f["event"]
        f["event_type"] = f["event"]

    tools.edit_table(cohort_dir / "patients.csv", one_event)
    pid = pd.read_csv(cohort_dir / "patients.csv").query("event == 1")["patient_id"].item()
    report = validate(cohort_dir)
    assert _errors_with(report, "patients.csv", "'event'", pid), report.errors
    assert tools.cli("validate", cohort_dir).exit_code == 2
    line = tools.assert_one_line_error(
        tools.train_cli(cohort_dir, tmp_path, "[clinical]"), "patients.csv", "'event'", pid
    )
    assert "fold" in line
    assert not list((tmp_path / "run").rglob("*.safetensors"))  # refused before any training


@pytest.mark.parametrize(
    ("unit", "factor", "guess"), [("months", 30.44, "days"), ("years", 12.0, "months")]
)
def test_implausible_time_unit_is_a_warning(cohort_dir, tools, unit, factor, guess):
    assert not [w for w in validate(cohort_dir).warnings if "time_unit" in w]
    tools.edit_table(cohort_dir / "patients.csv", lambda f: f.assign(time=f["time"] * factor))
    tools.edit_manifest(cohort_dir, lambda d: d["patients"].__setitem__("time_unit", unit))
    report = validate(cohort_dir)
    found = [w for w in report.warnings if "patients.csv" in w and "'time'" in w]
    assert found and unit in found[0] and guess in found[0] and "time_unit" in found[0]


def test_tcga_survival_months_in_days_is_a_warning(tmp_path, tools):
    def days(clinical):
        clinical["survival_months"] = clinical["survival_months"] * 30.44

    report = validate(tools.write_tcga(tmp_path, edit=days))
    assert [w for w in report.warnings if "'survival_months'" in w and "days" in w], report


def test_tcga_censorship_equal_to_event_is_an_error(tmp_path, tools):
    def same(clinical):
        clinical["censorship"] = clinical["event"]

    report = validate(tools.write_tcga(tmp_path, edit=same))
    assert _errors_with(report, "xyz/clinical.csv", "'censorship'", "'event'"), report.errors
    assert validate(tools.write_tcga(tmp_path / "ok")).ok


def test_manifest_censorship_equal_to_event_is_an_error(cohort_dir, tools):
    tools.edit_table(cohort_dir / "patients.csv", lambda f: f.assign(censorship=f["event"]))
    with pytest.raises(DataError, match=r"patients.csv column 'censorship'.*'event'"):
        Cohort.load(cohort_dir)


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e300])
def test_non_finite_or_absurd_genomic_values_are_errors(cohort_dir, tools, value):
    def edit(f):
        f.loc[4, "GENE0003"] = value

    tools.edit_table(cohort_dir / "genomics.csv", edit)
    pid = pd.read_csv(cohort_dir / "genomics.csv")["patient_id"][4]
    with pytest.raises(
        DataError, match=rf"genomics.csv column 'GENE0003'.*row 6 \(patient {pid}\)"
    ):
        Cohort.load(cohort_dir)
    assert _errors_with(validate(cohort_dir), "'GENE0003'", pid)


def test_infinite_time_is_an_error(cohort_dir, tools):
    tools.edit_table(
        cohort_dir / "patients.csv", lambda f: f.assign(time=f["time"].where(f.index != 3, np.inf))
    )
    with pytest.raises(DataError, match=r"patients.csv column 'time'.*row 5"):
        Cohort.load(cohort_dir)


# -- modalities without patients ----------------------------------------------------------


@pytest.mark.parametrize("how", ["unknown-ids", "no-rows"])
def test_modality_without_patients_warns_and_is_left_out(cohort_dir, tools, tmp_path, caplog, how):
    if how == "unknown-ids":
        tools.edit_table(
            cohort_dir / "images.csv", lambda f: f.assign(patient_id="X-" + f["patient_id"])
        )
    else:
        tools.edit_table(cohort_dir / "images.csv", lambda f: f.iloc[:0])
    report = validate(cohort_dir)
    assert report.ok, report.errors
    assert [w for w in report.warnings if "images.csv" in w and "'ct'" in w and "no patient" in w]
    with caplog.at_level(logging.WARNING):
        cohort = Cohort.load(cohort_dir)
    assert "ct" not in cohort.modalities  # train cannot silently train on an empty modality
    assert any("'ct'" in r.getMessage() for r in caplog.records)
    res = tools.train_cli(cohort_dir, tmp_path, "[clinical,ct]")
    tools.assert_one_line_error(res, "ct")


def test_validate_exits_2_on_errors(cohort_dir, tools):
    tools.edit_table(cohort_dir / "patients.csv", lambda f: f.assign(time=-1.0))
    res = tools.cli("validate", cohort_dir)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert tools.cli("validate", cohort_dir.parent / "nothing").exit_code == 2
