"""Failure table: every bad input gives a clear error (file, row, patient, column, fix).

Row numbers count the header as row 1: the patient ``P000`` (first data row) is row 2.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from multimodal.cli import app
from multimodal.data import Cohort, ValidationReport, validate
from multimodal.data.manifest import Problems
from multimodal.exceptions import DataError, LeakageError, MultimodalError, SchemaError


def _set(frame: str, column: str, row: int, value):
    def edit(f):
        f[frame][column] = f[frame][column].astype(object)
        f[frame].loc[row, column] = value

    return edit


def _modality(name: str, **changes):
    def edit(f):
        f["manifest"]["modalities"][name].update(changes)

    return edit


def _write(name: str, content: bytes):
    """Make ``edit`` that (after the cohort is written) replaces file ``name``."""
    return ("after", name, content)


# (id, edit of the files, exception class, regex matched by the raised message and report.errors)
FAILURES = [
    (
        "empty-id",
        _set("patients", "patient_id", 2, None),
        DataError,
        r"patients.csv column 'patient_id': 1 row\(s\) are empty: row 4",
    ),
    (
        "duplicate-id",
        _set("patients", "patient_id", 3, "P001"),
        DataError,
        r"patients.csv: patient_id is duplicated in 2 rows \(row 3 \(patient P001\); row 5 \(patient P001\)\)",
    ),
    (
        "negative-time",
        _set("patients", "time", 3, -3.0),
        DataError,
        r"patients.csv column 'time': 1 row\(s\) are below 0: row 5 \(patient P003\): -3.0; values must be >= 0",
    ),
    (
        "nan-time",
        _set("patients", "time", 0, np.nan),
        DataError,
        r"column 'time': 1 row\(s\) are empty: row 2 \(patient P000\)",
    ),
    (
        "text-time",
        _set("patients", "time", 1, "soon"),
        DataError,
        r"column 'time': 1 row\(s\) are not numbers: row 3 \(patient P001\): 'soon'",
    ),
    (
        "event-2",
        _set("patients", "event", 4, 2),
        DataError,
        r"column 'event': 1 row\(s\) are not 0/1 or True/False: row 6 \(patient P004\): 2; write 1",
    ),
    (
        "no-events",
        lambda f: f["patients"].__setitem__("event", 0),
        DataError,
        r"patients.csv: no patient has event = 1",
    ),
    (
        "missing-time-column",
        lambda f: f["patients"].rename(columns={"time": "tme"}, inplace=True),
        SchemaError,
        r"patients.csv: required column 'time' is missing. Did you mean 'tme'\?",
    ),
    (
        "pfs-without-event",
        lambda f: f["patients"].drop(columns="pfs_event", inplace=True),
        SchemaError,
        r"column 'pfs_time' needs its partner 'pfs_event'",
    ),
    (
        "unknown-top-key",
        lambda f: f["manifest"].__setitem__("modalites", {}),
        SchemaError,
        r"cohort.yaml: unknown key 'modalites'. Did you mean 'modalities'\?",
    ),
    (
        "unknown-modality-key",
        _modality("clinical", numric=["age"]),
        SchemaError,
        r"modalities.clinical \(kind clinical\): unknown key 'numric'. Did you mean 'numeric'\?",
    ),
    (
        "unknown-kind",
        _modality("genomics", kind="genomic"),
        SchemaError,
        r"modalities.genomics: unknown kind 'genomic'. Did you mean 'genomics'\?",
    ),
    (
        "bad-time-unit",
        lambda f: f["manifest"]["patients"].__setitem__("time_unit", "monts"),
        SchemaError,
        r"patients.time_unit: 'monts' is not one of",
    ),
    (
        "escaping-path",
        _modality("report", path="../../reports.csv"),
        SchemaError,
        r"modalities.report.path: path '../../reports.csv' .*outside the manifest folder",
    ),
    ("missing-file", _modality("report", path="nope.csv"), DataError, r"nope.csv: file not found"),
    (
        "groups-and-groups_path",
        _modality("genomics", groups={"a": ["G0"]}),
        SchemaError,
        r"give either 'groups' or 'groups_path', not both",
    ),
    (
        "outcome-as-numeric",
        _modality("clinical", numeric=["age", "survival_months"]),
        LeakageError,
        r"clinical.csv: column 'survival_months' is an outcome column and cannot be a numeric covariate",
    ),
    (
        "outcome-as-categorical",
        _modality("clinical", categorical=["sex", "vital_status"]),
        LeakageError,
        r"clinical.csv: column 'vital_status' is an outcome column",
    ),
    (
        "outcome-in-genomics",
        lambda f: f["genomics"].__setitem__("cdr_os_days", 1.0),
        LeakageError,
        r"genomics.csv: column 'cdr_os_days' is an outcome column and cannot be a genomics feature",
    ),
    (
        "undeclared-covariate",
        _modality("clinical", categorical=["sex", "stag"]),
        SchemaError,
        r"clinical.csv: declared covariate 'stag' is not a column. Did you mean 'stage'\?",
    ),
    (
        "non-numeric-clinical",
        _set("clinical", "age", 1, "old"),
        DataError,
        r"clinical.csv column 'age': 1 row\(s\) are not numbers: row 3 \(patient P001\): 'old'",
    ),
    (
        "non-numeric-genomics",
        _set("genomics", "G2", 5, "high"),
        DataError,
        r"genomics.csv column 'G2': 1 row\(s\) are not numbers: row 7 \(patient P005\): 'high'",
    ),
    (
        "duplicate-genomics",
        _set("genomics", "patient_id", 1, "P000"),
        DataError,
        r"genomics.csv: patient_id is duplicated",
    ),
    (
        "unknown-group-feature",
        lambda f: f["groups"].__setitem__("feature", ["G0", "G1", "GX", "G3", "G4", "G5"]),
        SchemaError,
        r"groups.csv: group 'a' names 1 feature\(s\) that are not columns of genomics.csv: GX",
    ),
    (
        "bad-date",
        _set("reports", "date", 1, "yesterday"),
        DataError,
        r"reports.csv column 'date': 1 row\(s\) are not dates: row 3 \(patient P000\): 'yesterday'",
    ),
    (
        "missing-text-column",
        lambda f: f["reports"].rename(columns={"text": "txt"}, inplace=True),
        SchemaError,
        r"reports.csv: required column 'text' is missing. Did you mean 'txt'\?",
    ),
    (
        "image-unknown-suffix",
        _set("images", "path", 0, "images/P000.jpg"),
        DataError,
        r"images.csv column 'path': cannot tell the image format of 1 row\(s\): row 2 \(patient P000\)",
    ),
    (
        "image-bad-format",
        lambda f: f["images"].__setitem__("format", ["nifti", "nifty", "nifti"]),
        DataError,
        r"images.csv column 'format': 1 row\(s\) are not one of \['nifti', 'dicom', 'png'\]",
    ),
    (
        "bag-bad-suffix",
        _set("bags", "path", 0, "bags/x.txt"),
        DataError,
        r"bags.csv column 'path': 1 row\(s\) are not feature files",
    ),
    (
        "corrupt-genomics",
        _write("genomics.csv", b'\x00\x01\x02\xff\xfe garbage\n"unterminated'),
        DataError,
        r"genomics.csv",
    ),
    ("invalid-yaml", _write("cohort.yaml", b"patients: [unclosed"), SchemaError, r"not valid YAML"),
]


def _build(make_cohort, edit):
    if isinstance(edit, tuple):
        path = make_cohort()
        (path.parent / edit[1]).write_bytes(edit[2])
        return path
    return make_cohort(edit=edit)


@pytest.mark.parametrize(
    ("edit", "error", "match"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_failure_table(make_cohort, edit, error, match):
    path = _build(make_cohort, edit)
    with pytest.raises(error, match=match):
        Cohort.from_manifest(path)
    report = validate(path)
    assert not report.ok
    assert any(re.search(match, e) for e in report.errors), report.errors


def test_errors_are_collected_not_stopped_at_the_first(make_cohort):
    def edit(f):
        f["patients"].loc[3, "time"] = -1.0
        f["clinical"]["age"] = f["clinical"]["age"].astype(object)
        f["clinical"].loc[0, "age"] = "x"
        f["genomics"]["death_date"] = 1.0

    report = validate(make_cohort(edit=edit))
    assert len(report.errors) == 3
    assert report.coverage is not None and report.n_patients == 12
    with pytest.raises(LeakageError) as info:  # leakage is raised first, all messages included
        Cohort.from_manifest(make_cohort(edit=edit))
    assert len(str(info.value).splitlines()) == 3


def test_long_lists_of_bad_rows_are_truncated(make_cohort):
    def edit(f):
        f["patients"]["time"] = -1.0

    with pytest.raises(DataError, match=r"12 row\(s\) are below 0: .*; \.\.\. and 7 more"):
        Cohort.from_manifest(make_cohort(edit=edit))


def test_unknown_patients_in_a_modality_are_a_warning(make_cohort):
    def edit(f):
        f["genomics"].loc[len(f["genomics"])] = ["STRANGER", *[0.0] * 6]

    path = make_cohort(edit=edit)
    report = validate(path)
    assert report.ok, report.errors
    assert any(
        "genomics.csv: 1 patient(s) are not in the patient table" in w for w in report.warnings
    )
    assert "STRANGER" not in Cohort.from_manifest(path).sources["genomics"].table.index


def test_missing_modality_is_normal(make_cohort):
    cohort = Cohort.from_manifest(make_cohort())
    assert "P011" not in cohort.sources["clinical"].patient_ids  # no error, just absent
    assert not cohort.availability().loc["P011", "clinical"]


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (
            lambda d: (d / "images" / "P001.nii.gz").unlink(),
            r"patient P001: .*P001.nii.gz: file not found",
        ),
        (
            lambda d: (d / "images" / "P001.nii.gz").write_bytes(b"not a nifti at all" * 30),
            r"patient P001: .*not a readable NIfTI file",
        ),
        (
            lambda d: (d / "images" / "P002.nii.gz").write_bytes(b""),
            r"patient P002: .*file is empty",
        ),
        (
            lambda d: (d / "bags" / "P000_1.npy").unlink(),
            r"bags.csv \(modality 'wsi'\): 1 file\(s\) missing",
        ),
    ],
)
def test_validate_checks_files(make_cohort, corrupt, match):
    path = make_cohort()
    corrupt(path.parent)
    assert Cohort.from_manifest(path) is not None  # loading does not open image files
    report = validate(path)
    assert not report.ok
    assert any(re.search(match, e) for e in report.errors), report.errors


def test_validate_png_and_dicom(make_cohort, image_writers):
    write_png, _ = image_writers

    def edit(f):
        f["images"] = pd.DataFrame(
            {
                "patient_id": ["P000", "P001", "P002", "P003"],
                "path": ["png/a.png", "png/b.png", "dicom/series1", "dicom/empty"],
            }
        )
        f["manifest"]["modalities"]["ct"]["spatial_dims"] = 2  # PNGs and one-slice series

    path = make_cohort(edit=edit)
    root = path.parent
    (root / "png").mkdir()
    write_png(root / "png" / "a.png")
    (root / "png" / "b.png").write_bytes(b"GIF89a-not-a-png" * 4)
    (root / "dicom" / "series1").mkdir(parents=True)
    (root / "dicom" / "empty").mkdir()
    ds = _tiny_dicom()
    ds.save_as(root / "dicom" / "series1" / "1.dcm", enforce_file_format=True)
    cohort = Cohort.from_manifest(path)
    assert cohort.sources["ct"].table["format"].tolist() == ["png", "png", "dicom", "dicom"]
    report = validate(path)
    text = "\n".join(report.errors)
    assert "P001" in text and "not a PNG file" in text
    assert "P003" in text and "holds no .dcm files" in text
    assert "P000" not in text and "P002" not in text
    assert len(report.errors) == 1


def _tiny_dicom():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientID = "P002"
    ds.Rows, ds.Columns = 2, 2
    # pixels (validate decodes them): 2x2 unsigned 16-bit, not constant
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.array([[0, 1], [2, 3]], dtype=np.uint16).tobytes()
    assert pydicom is not None
    return ds


def test_report_format_lists_errors_and_coverage(make_cohort):
    report = validate(make_cohort())
    assert isinstance(report, ValidationReport) and report.ok and report.n_patients == 12
    text = report.format()
    assert "all_modalities" in text and "n_patients" in text and text.endswith(f"({report.path})")
    bad = validate(make_cohort(edit=_set("patients", "time", 3, -3.0)))
    assert bad.format().startswith("error: patients.csv column 'time'")


def test_validate_never_raises_on_a_missing_path(tmp_path):
    report = validate(tmp_path / "nothing.yaml")
    assert not report.ok and "not found" in report.errors[0] and report.coverage is None


def _big_manifest(
    root: Path, write_nifti, n: int = 10_000, n_genes: int = 1_000, n_images: int = 200
) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    ids = np.array([f"PT{i:05d}" for i in range(n)])
    pd.DataFrame(
        {
            "patient_id": ids,
            "time": rng.uniform(0, 100, n).round(2),
            "event": rng.integers(0, 2, n),
            "site": rng.choice(["A", "B", "C"], n),
        }
    ).to_csv(root / "patients.csv", index=False)
    pd.DataFrame(
        {
            "patient_id": ids,
            "age": rng.integers(20, 90, n),
            "sex": rng.choice(["F", "M"], n),
            "stage": rng.choice(["I", "II", "III", "IV"], n),
        }
    ).to_csv(root / "clinical.csv", index=False)
    genes = pd.DataFrame(
        rng.normal(size=(n, n_genes)).astype(np.float32),
        columns=[f"GENE{j}" for j in range(n_genes)],
    )
    genes.insert(0, "patient_id", ids)
    genes.to_parquet(root / "genomics.parquet")  # CSV writing of 10M floats alone takes ~20 s
    pd.DataFrame(
        {
            "patient_id": np.repeat(ids, 2),
            "text": "Report text. " * 20,
            "date": np.tile(["2020-01-01", "2021-06-30"], n),
        }
    ).to_csv(root / "reports.csv", index=False)
    (root / "img").mkdir(exist_ok=True)
    write_nifti(root / "img" / "ref.nii.gz")
    ref = (root / "img" / "ref.nii.gz").read_bytes()
    for i in range(n_images):
        (root / "img" / f"{i}.nii.gz").write_bytes(ref)
    pd.DataFrame(
        {"patient_id": ids[:n_images], "path": [f"img/{i}.nii.gz" for i in range(n_images)]}
    ).to_csv(root / "images.csv", index=False)
    manifest = {
        "version": 1,
        "patients": {"path": "patients.csv"},
        "modalities": {
            "clinical": {
                "kind": "clinical",
                "path": "clinical.csv",
                "numeric": ["age"],
                "categorical": ["sex", "stage"],
            },
            "genomics": {"kind": "genomics", "path": "genomics.parquet"},
            "report": {"kind": "text", "path": "reports.csv"},
            "ct": {"kind": "imaging", "path": "images.csv"},
        },
    }
    (root / "cohort.yaml").write_text(yaml.safe_dump(manifest))
    return root / "cohort.yaml"


def test_validating_10k_patients_takes_seconds(tmp_path, image_writers):
    path = _big_manifest(tmp_path / "big", image_writers[1])
    start = time.perf_counter()
    report = validate(path)
    elapsed = time.perf_counter() - start
    assert report.ok, report.errors
    assert report.n_patients == 10_000
    assert report.coverage.loc["ct", "n_patients"] == 200
    assert report.coverage.loc["genomics", "n_patients"] == 10_000
    assert elapsed < 30, f"validation took {elapsed:.1f} s"


def test_errors_are_multimodal_errors():
    assert issubclass(SchemaError, MultimodalError) and issubclass(LeakageError, ValueError)


def _shown_lines(result, caplog) -> list[str]:
    """What a ``multimodal validate`` run showed: its output (stdout + stderr) and its log."""
    lines = result.output.splitlines() + [r.getMessage() for r in caplog.records]
    return [line.strip() for line in lines if line.strip()]


def test_validate_shows_each_warning_and_error_once(make_cohort, caplog):
    def edit(f):
        f["genomics"].loc[len(f["genomics"])] = ["STRANGER", *[0.0] * 6]
        f["patients"] = f["patients"].astype({"time": object})
        f["patients"].loc[1, "time"] = None

    path = make_cohort(edit=edit)
    (path.parent / "images" / "P001.nii.gz").unlink()  # a missing modality file
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    shown = _shown_lines(result, caplog)
    warning = (
        "genomics.csv: 1 patient(s) are not in the patient table and are ignored (e.g. STRANGER)"
    )
    empty = "patients.csv column 'time': 1 row(s) are empty: row 3 (patient P001); every row needs"
    for text in (warning, empty, "P001.nii.gz: file not found"):
        assert sum(text in line for line in shown) == 1, (text, shown)
    repeated = [line for line, n in Counter(shown).items() if n > 1]
    assert not repeated, repeated


def test_validate_report_holds_warnings_without_logging_them(make_cohort, caplog):
    def edit(f):
        f["clinical"].loc[len(f["clinical"])] = ["STRANGER", 50, "F", "I"]

    with caplog.at_level(logging.WARNING):
        report = validate(make_cohort(edit=edit))
    assert report.ok and len(report.warnings) == 1
    assert report.format().count("(e.g. STRANGER)") == 1
    assert not [r for r in caplog.records if "STRANGER" in r.getMessage()]


def test_loading_logs_each_warning_once(make_cohort, caplog):
    """Without a report to carry them, :meth:`Cohort.load` logs the warnings (once each)."""

    def edit(f):
        f["clinical"].loc[len(f["clinical"])] = ["STRANGER", 50, "F", "I"]

    with caplog.at_level(logging.WARNING):
        Cohort.load(make_cohort(edit=edit))
    assert len([r for r in caplog.records if "STRANGER" in r.getMessage()]) == 1


def test_problems_keep_one_copy_of_a_warning(caplog):
    problems = Problems()
    with caplog.at_level(logging.WARNING):
        problems.warn("x.csv: something odd")
        problems.warn("x.csv: something odd")
    assert problems.warnings == ["x.csv: something odd"] and len(caplog.records) == 1
