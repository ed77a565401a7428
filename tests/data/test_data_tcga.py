"""Real TCGA folders (../shared/data/tcga): counts against coverage_summary.csv, published folds."""

from __future__ import annotations

import pandas as pd
import pytest

from multimodal.data import Cohort, validate
from multimodal.exceptions import DataError, LeakageError, SchemaError

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def blca(shared_data) -> Cohort:
    return Cohort.from_tcga(shared_data / "tcga" / "blca")


@pytest.fixture(scope="module")
def summary(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "tcga" / "coverage_summary.csv").set_index("cancer")


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


def test_blca_published_folds(blca):
    folds = blca.folds(name="porpoise_mcat_5fold")
    assert len(folds) == 5
    vals = [set(f.val_ids) for f in folds]
    assert sum(len(v) for v in vals) == 373
    assert set().union(*vals) == set(blca.patients.index)  # disjoint and covering
    for f in folds:
        assert len(f.train_ids) + len(f.val_ids) == 373


def test_survpath_folds_need_the_survpath_cohort(blca, shared_data):
    with pytest.raises(DataError, match=r"14 cohort patient.*in no split.*splits_name"):
        blca.folds(name="survpath_5fold")
    sp = Cohort.from_tcga(shared_data / "tcga" / "blca", splits_name="survpath_5fold")
    assert len(sp) == 359
    folds = sp.folds()
    assert sorted(v for f in folds for v in f.val_ids) == sorted(sp.patients.index)


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


def test_load_and_validate_dispatch_on_tcga_folder(shared_data):
    folder = shared_data / "tcga" / "gbmlgg"
    assert len(Cohort.load(folder)) == 569
    report = validate(folder)
    assert report.ok, report.errors
    assert report.n_patients == 569 and report.coverage.loc["report", "n_patients"] == 118
