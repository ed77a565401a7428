"""TCGA folders: the real ones (../shared/data/tcga; counts against coverage_summary.csv, published
folds) and tiny written ones (messages name the clinical.csv columns, not the internal names)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from multimodal.cli import app
from multimodal.data import Cohort, validate
from multimodal.exceptions import DataError, LeakageError, SchemaError

shared = pytest.mark.shared


@pytest.fixture(scope="module")
def blca(shared_data) -> Cohort:
    return Cohort.from_tcga(shared_data / "tcga" / "blca")


@pytest.fixture(scope="module")
def summary(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "tcga" / "coverage_summary.csv").set_index("cancer")


@shared
def test_blca_patients_and_outcomes(blca):
    pt = blca.patients
    assert len(pt) == 373 and pt.index.is_unique
    assert pt["event"].dtype == bool and int(pt["event"].sum()) == 169
    assert (pt["time"] >= 0).all()
    assert {"pfs_time", "pfs_event", "dss_time", "dss_event", "site"} <= set(pt.columns)
    # pfs = CDR progression-free interval converted from days to months; on the day of the OS
    # event or censoring it is the OS time exactly (so "death first" is exact, docs/progression.md)
    clinical = pd.read_csv(blca.root / "clinical.csv").set_index("patient_id").reindex(pt.index)
    same_day = clinical["cdr_pfi_days"] == clinical["cdr_os_days"]
    expected = (clinical["cdr_pfi_days"] / 30.4375).where(~same_day, pt["time"])
    assert (pt["pfs_time"] - expected).abs().max() < 1e-9
    assert (
        int(same_day.sum()) == 245
        and (pt.loc[same_day, "pfs_time"] == pt.loc[same_day, "time"]).all()
    )
    assert pt["site"].iloc[0] == clinical["tss_site"].iloc[0]


@shared
def test_blca_coverage_matches_summary(blca, summary):
    row = summary.loc["BLCA"]
    cov = blca.coverage()
    assert blca.modalities == ["clinical", "genomics", "report", "report_structured"]
    assert cov.loc["clinical", "n_patients"] == row["patients"] == 373
    assert cov.loc["genomics", "n_patients"] == row["genomics_patients"]
    assert cov.loc["report", "n_patients"] == row["report_raw"] == 54
    assert cov.loc["report_structured", "n_patients"] == row["report_structured"] == 341
    assert cov.loc["clinical", "n_events"] == row["events"]
    stage = blca.sources["clinical"].table["stage"]
    assert stage.notna().sum() == row["stage_known"]


@shared
def test_blca_sources(blca, summary):
    clin = blca.sources["clinical"]
    assert clin.numeric == ["age"] and clin.categorical == ["sex", "stage"]
    gen = blca.sources["genomics"]
    row = summary.loc["BLCA"]
    sizes = {g: len(c) for g, c in gen.groups.items()}
    assert sizes == {"rna": row["rnaseq"], "mut": row["mut"], "cnv": row["cnv"]}
    assert not any(c.startswith(("cdr_", "survival")) for c in gen.table.columns)
    texts = blca.sources["report_structured"].texts()
    assert len(texts) == 341 and texts.str.len().min() > 0
    # each source knows its file, so that messages about it (predict's input checks) name it
    files = {m: s.path.name for m, s in blca.sources.items()}
    assert files["clinical"] == "clinical.csv" and files["genomics"] == "genomics.csv.gz"
    assert files["report"] == "reports.csv"
    assert files["report_structured"] == "reports_structured.csv"


@shared
def test_blca_published_folds(blca):
    folds = blca.folds(name="porpoise_mcat_5fold")
    assert len(folds) == 5
    vals = [set(f.val_ids) for f in folds]
    assert sum(len(v) for v in vals) == 373
    assert set().union(*vals) == set(blca.patients.index)  # disjoint and covering
    for f in folds:
        assert len(f.train_ids) + len(f.val_ids) == 373


@shared
def test_survpath_folds_need_the_survpath_cohort(blca, shared_data):
    with pytest.raises(DataError, match=r"14 cohort patient.*in no split.*splits_name"):
        blca.folds(name="survpath_5fold")
    sp = Cohort.from_tcga(shared_data / "tcga" / "blca", splits_name="survpath_5fold")
    assert len(sp) == 359
    folds = sp.folds()
    assert sorted(v for f in folds for v in f.val_ids) == sorted(sp.patients.index)


@shared
@pytest.mark.parametrize(
    ("cancer", "categorical"),
    [("brca", ["sex", "stage"]), ("gbmlgg", ["sex"])],  # gliomas are not staged
)
def test_other_cancers(shared_data, summary, cancer, categorical):
    cohort = Cohort.from_tcga(shared_data / "tcga" / cancer)
    row = summary.loc[cancer.upper()]
    assert len(cohort) == row["patients"]
    assert int(cohort.patients["event"].sum()) == row["events"]
    assert cohort.sources["clinical"].categorical == categorical
    cov = cohort.coverage()
    assert cov.loc["report", "n_patients"] == row["report_raw"]
    assert cov.loc["genomics", "n_patients"] == row["patients"]
    if row["report_structured"]:
        assert cov.loc["report_structured", "n_patients"] == row["report_structured"]
    else:
        assert "report_structured" not in cohort.modalities
    folds = cohort.folds(name="porpoise_mcat_5fold")
    assert sorted(v for f in folds for v in f.val_ids) == sorted(cohort.patients.index)


@shared
def test_tcga_covariate_choice_refuses_outcomes(shared_data):
    folder = shared_data / "tcga" / "blca"
    cohort = Cohort.from_tcga(
        folder, clinical_numeric=["age", "n_slides"], clinical_categorical=["race"]
    )
    assert cohort.sources["clinical"].numeric == ["age", "n_slides"]
    with pytest.raises(LeakageError, match="'cdr_os_days' is an outcome column"):
        Cohort.from_tcga(folder, clinical_numeric=["age", "cdr_os_days"])
    with pytest.raises(LeakageError, match="'censorship' is an outcome column"):
        Cohort.from_tcga(folder, clinical_categorical=["censorship"])
    with pytest.raises(SchemaError, match="Did you mean 'race'"):
        Cohort.from_tcga(folder, clinical_categorical=["rac"])
    with pytest.raises(DataError, match="Did you mean 'porpoise_mcat_5fold'"):
        Cohort.from_tcga(folder, splits_name="porpoise_5fold")


@shared
def test_load_and_validate_dispatch_on_tcga_folder(shared_data):
    folder = shared_data / "tcga" / "gbmlgg"
    assert len(Cohort.load(folder)) == 569
    report = validate(folder)
    assert report.ok, report.errors
    assert report.n_patients == 569 and report.coverage.loc["report", "n_patients"] == 118


# -- tiny written TCGA folders: messages name the user's clinical.csv columns ---------------------


def write_tcga_folder(root: Path, edit=None, n: int = 8) -> Path:
    """A TCGA-layout folder ``root/xyz`` with clinical.csv (and reports.csv); returns the folder.

    ``edit(clinical)`` may change the clinical DataFrame before it is written.
    """
    rng = np.random.default_rng(0)
    ids = [f"TCGA-XY-{i:04d}" for i in range(n)]
    os_days = rng.integers(30, 3000, n)
    clinical = pd.DataFrame(
        {
            "patient_id": ids,
            "survival_months": (os_days / 30.4).round(2),
            "event": [1, 0] * (n // 2),
            "censorship": [0, 1] * (n // 2),
            "age": rng.integers(40, 80, n),
            "sex": rng.choice(["F", "M"], n),
            "stage": rng.choice(["I", "II", "III"], n),
            "tss_site": [f"S{i % 3}" for i in range(n)],
            "cdr_os_event": [1, 0] * (n // 2),
            "cdr_os_days": os_days,
            "cdr_pfi_event": [1] * n,
            "cdr_pfi_days": os_days // 2,
            "cdr_dss_event": [1, 0] * (n // 2),
            "cdr_dss_days": os_days,
        }
    )
    if edit is not None:
        clinical = clinical.astype(object)
        edit(clinical)
    folder = root / "xyz"
    folder.mkdir(parents=True)
    clinical.to_csv(folder / "clinical.csv", index=False)
    pd.DataFrame({"patient_id": ids[:3], "text": ["a report"] * 3}).to_csv(
        folder / "reports.csv", index=False
    )
    return folder


def _cell(column: str, row: int, value):
    def edit(clinical: pd.DataFrame) -> None:
        clinical.loc[row, column] = value

    return edit


def test_written_tcga_folder_loads(tmp_path):
    cohort = Cohort.load(write_tcga_folder(tmp_path))
    assert len(cohort) == 8 and cohort.modalities == ["clinical", "report"]
    assert cohort.patients["event"].dtype == bool
    assert {"pfs_time", "dss_time", "site"} <= set(cohort.patients.columns)


def test_tcga_sources_name_their_files_and_an_impossible_age_is_for_validate(tmp_path):
    folder = write_tcga_folder(tmp_path, _cell("age", 2, 25000))
    cohort = Cohort.load(folder)  # loads: patients to predict are checked against a model
    assert {m: s.path.name for m, s in cohort.sources.items()} == {
        "clinical": "clinical.csv",
        "report": "reports.csv",
    }
    report = validate(folder)
    assert not report.ok
    assert any(
        "clinical.csv column 'age': 1 patient(s) are not an age in years" in e
        and "patient TCGA-XY-0002: 25000" in e
        for e in report.errors
    ), report.errors


def test_empty_survival_months_names_the_column_file_and_patient(tmp_path):
    folder = write_tcga_folder(tmp_path, _cell("survival_months", 2, None))
    expected = (
        "xyz/clinical.csv column 'survival_months': 1 row(s) are empty: "
        "row 4 (patient TCGA-XY-0002); every row needs a value"
    )
    with pytest.raises(DataError) as info:
        Cohort.load(folder)
    assert str(info.value) == expected  # one error; nothing about the internal column 'time'
    report = validate(folder)
    assert report.errors == [expected]
    # the PFS/DSS times copied from survival_months are unknown quietly: no second message
    assert report.warnings == []
    result = CliRunner().invoke(app, ["validate", str(folder)])
    assert result.exit_code == 2
    assert f"error: {expected}" in result.output
    assert "'time'" not in result.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _cell("survival_months", 5, -2.0),
            r"xyz/clinical.csv column 'survival_months': 1 row\(s\) are below 0: "
            r"row 7 \(patient TCGA-XY-0005\): -2.0; values must be >= 0",
        ),
        (
            _cell("survival_months", 1, "soon"),
            r"column 'survival_months': 1 row\(s\) are not numbers: "
            r"row 3 \(patient TCGA-XY-0001\): 'soon'",
        ),
        (
            _cell("event", 3, 2),
            r"xyz/clinical.csv column 'event': 1 row\(s\) are not 0/1 or True/False: "
            r"row 5 \(patient TCGA-XY-0003\)",
        ),
        (
            _cell("cdr_pfi_event", 0, 3),
            r"xyz/clinical.csv column 'cdr_pfi_event': 1 row\(s\) are not 0/1 or True/False: "
            r"row 2 \(patient TCGA-XY-0000\)",
        ),
        (
            _cell("cdr_dss_days", 4, -10),
            r"xyz/clinical.csv column 'cdr_dss_days': 1 row\(s\) are below 0: "
            r"row 6 \(patient TCGA-XY-0004\)",
        ),
        (
            lambda c: c.__setitem__("event", 0),
            r"xyz/clinical.csv: no patient has event = 1",
        ),
    ],
    ids=[
        "negative-months",
        "text-months",
        "event-2",
        "pfi-event-3",
        "negative-dss-days",
        "no-event",
    ],
)
def test_tcga_errors_name_the_clinical_csv_columns(tmp_path, edit, message):
    folder = write_tcga_folder(tmp_path, edit)
    with pytest.raises(DataError, match=message) as info:
        Cohort.load(folder)
    internal = ("'time'", "'pfs_time'", "'pfs_event'", "'dss_time'", "'dss_event'")
    assert not any(name in str(info.value) for name in internal), str(info.value)
    assert any(re.search(message, e) for e in validate(folder).errors)
