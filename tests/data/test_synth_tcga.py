"""The synthetic cohort in the TCGA folder layout (multimodal.data.synth_tcga): it loads and
validates as a TCGA folder, its folds are the published format, it is deterministic, and its
ground truth has the intended strength, stage interaction and report signal."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from typer.testing import CliRunner

from multimodal.cli import app
from multimodal.data import Cohort, validate
from multimodal.data.synth_tcga import SPLIT_NAME, TRUTH_PARTS, write_tcga_cohort
from multimodal.exceptions import DataError
from multimodal.survival.metrics import harrell_c

N = 600
WRITTEN = (
    "clinical.csv",
    "genomics.csv.gz",
    "reports.csv",
    "reports_structured.csv",
    "truth.csv",
    "truth_features.csv",
    "README.txt",
    *(f"splits/{SPLIT_NAME}/fold_{k}.csv" for k in range(5)),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_tcga_cohort(tmp_path_factory.mktemp("synth_tcga") / "syn", n_patients=N, seed=0)


@pytest.fixture(scope="module")
def table(folder) -> pd.DataFrame:
    """clinical.csv joined with truth.csv (same patients, same order)."""
    clinical = pd.read_csv(folder / "clinical.csv")
    truth = pd.read_csv(folder / "truth.csv")
    assert (clinical["patient_id"] == truth["patient_id"]).all()
    return pd.concat([clinical, truth.drop(columns="patient_id")], axis=1)


def _c(table: pd.DataFrame, risk) -> float:
    return harrell_c(table["survival_months"], table["event"] == 1, np.asarray(risk))


def test_loads_as_a_tcga_cohort(folder, table):
    cohort = Cohort.load(folder)
    assert cohort.name == "tcga-syn" and len(cohort) == N and cohort.time_unit == "months"
    assert cohort.modalities == ["clinical", "genomics", "report", "report_structured"]
    cov = cohort.coverage()["n_patients"]
    assert cov["report_structured"] == table["has_report_structured"].sum()
    assert cov["report"] == table["has_report"].sum() == table["has_report_text"].sum()
    assert 0.85 < cov["report_structured"] / N < 0.95 and 0.15 < cov["report"] / N < 0.25
    groups = {g: len(cols) for g, cols in cohort.sources["genomics"].groups.items()}
    assert groups == {"rna": 200, "mut": 40, "cnv": 60}
    clin = cohort.sources["clinical"]
    assert clin.numeric == ["age"] and clin.categorical == ["sex", "stage"]
    stage = clin.table["stage"]
    assert set(stage.dropna()) == {"I", "II", "III", "IV"} and 0 < stage.isna().sum() < 0.08 * N
    # the PFI columns become the pfs endpoint; progression never after death or censoring
    pt = cohort.patients
    assert (pt["pfs_time"] <= pt["time"] + 1e-9).all() and pt["pfs_event"].mean() > pt[
        "event"
    ].mean()


def test_validates_without_errors_or_warnings(folder):
    report = validate(folder)
    assert report.ok, report.errors
    assert report.warnings == [] and report.n_patients == N


def test_published_style_folds(folder, table):
    folds = Cohort.load(folder).folds(name=SPLIT_NAME)
    assert len(folds) == 5
    val = [set(f.val_ids) for f in folds]
    assert set().union(*val) == set(table["patient_id"]) and sum(map(len, val)) == N
    event = table.set_index("patient_id")["event"]
    for f in folds:  # stratified by event: every fold's event rate close to the cohort's
        assert abs(event[list(f.val_ids)].mean() - event.mean()) < 0.02
    first = pd.read_csv(folder / "splits" / SPLIT_NAME / "fold_0.csv")
    assert list(first.columns) == ["patient_id", "split"]
    assert first["split"].tolist() == sorted(first["split"])  # train rows, then val (as PORPOISE)


def test_same_seed_same_bytes(folder, tmp_path):
    again = write_tcga_cohort(tmp_path / "again", n_patients=N, seed=0)
    for name in WRITTEN:
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name
    other = write_tcga_cohort(tmp_path / "other", n_patients=N, seed=1)
    assert (other / "clinical.csv").read_bytes() != (folder / "clinical.csv").read_bytes()
    assert "seed=0" in (folder / "README.txt").read_text()


def test_ground_truth_strength(table):
    parts = table[list(TRUTH_PARTS)].sum(axis=1)
    assert np.allclose(parts, table["true_log_hazard"], atol=1e-5)
    assert 0.5 <= 1 - table["event"].mean() <= 0.65  # censored share
    assert 15 < table["survival_months"].median() < 40  # months, like TCGA follow-up
    c_truth = _c(table, table["true_log_hazard"])
    # 0.75-0.80 intended; seed 0 gives 0.784 (0.774-0.784 over seeds 0-4, +-0.01 sampling noise)
    assert 0.75 <= c_truth <= 0.81
    assert _c(table, table["log_hazard_clinical"]) < c_truth - 0.05  # clinical alone: well below
    for part in ("log_hazard_genomics_interaction", "log_hazard_report"):
        without = _c(table, table["true_log_hazard"] - table[part])
        assert c_truth - without > 0.01, part  # each carries C of its own (0.024, 0.023 here)


def test_signature_acts_in_stage_iii_iv_only(folder, table):
    late = table["true_stage"].isin(["III", "IV"])
    inter = table["log_hazard_genomics_interaction"]
    assert (inter[~late] == 0).all()
    assert np.allclose(inter[late], table.loc[late, "signature_score"], atol=1e-5)
    features = pd.read_csv(folder / "truth_features.csv")
    genes = features.loc[features["role"] == "signature", "column"].tolist()
    assert len(genes) == 6 and all(g.endswith("_rnaseq") for g in genes)
    # a Cox fit on the written expression values: the signature acts in stage III/IV, not in I/II
    score = pd.read_csv(folder / "genomics.csv.gz")[genes].mean(axis=1)
    coef = {}
    for name, rows in (("early", ~late), ("late", late)):
        frame = pd.DataFrame({"score": score, "T": table["survival_months"], "E": table["event"]})
        coef[name] = CoxPHFitter().fit(frame[rows], "T", "E").params_["score"]
    # true log-HR per unit of the mean: 0 (early) and 1 / 0.837 = 1.2 (late), attenuated to about
    # 0.95 by the covariates left out of this fit (seeds 0-4: 0.73-1.0); SEs about 0.12
    assert abs(coef["early"]) < 0.4 and coef["late"] > 0.6


def _field(text: str, key: str) -> str | None:
    match = re.search(rf"^{re.escape(key)}: (.*)$", text, flags=re.MULTILINE)
    return match.group(1) if match else None


def test_report_signal_needs_negation_handling(folder, table):
    reports = pd.read_csv(folder / "reports_structured.csv")
    assert (reports["in_cohort"] == 0).sum() > 0  # rows outside the cohort, as in the real files
    reports = reports[reports["in_cohort"] == 1].merge(table, on="patient_id")
    lvi = reports["text_structured"].map(lambda t: _field(t, "Lymphovascular invasion"))
    stated = lvi.notna()
    assert 0.75 < stated.mean() < 0.95
    # a negation-aware reading recovers the finding exactly ...
    negated = lvi[stated].str.contains(r"^(?:No\b|Not\b|Absen)|not identified", regex=True)
    assert (negated != (reports.loc[stated, "lymphovascular_invasion"] == 1)).all()
    # ... while "present" appears on both sides ("No lymphovascular invasion present")
    said_present = lvi[stated].str.contains("present", case=False)
    assert reports.loc[stated][said_present]["lymphovascular_invasion"].nunique() == 2
    # the report part is its own signal: unrelated to the clinical and genomic parts
    corr = table[list(TRUTH_PARTS)].corr()["log_hazard_report"]
    assert corr.drop("log_hazard_report").abs().max() < 0.15
    assert _c(table, table["log_hazard_report"]) > 0.57
    raw = pd.read_csv(folder / "reports.csv")
    assert list(raw.columns) == ["patient_id", "text", "summary_llm", "source"]
    assert raw["text"].str.contains("INVASION").all()


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="n_patients must be an integer >= 30"):
        write_tcga_cohort(tmp_path / "a", n_patients=5)
    with pytest.raises(DataError, match="report_fraction must be in"):
        write_tcga_cohort(tmp_path / "a", report_fraction=1.5)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "cohort.yaml").write_text("name: x\n")
    with pytest.raises(DataError, match="holds a cohort manifest"):
        write_tcga_cohort(tmp_path / "m")


def test_no_raw_reports_leaves_the_modality_out(tmp_path):
    folder = write_tcga_cohort(tmp_path / "s", n_patients=60, seed=2, report_fraction=0.0)
    assert not (folder / "reports.csv").exists()
    assert Cohort.load(folder).modalities == ["clinical", "genomics", "report_structured"]


def test_cli_writes_tcga_layout_and_it_validates(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli_tcga"
    args = ["synth", "--layout", "tcga", "--out", str(out), "--n-patients", "80", "--seed", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"multimodal train --config configs/tcga.yaml --cohort {out}" in res.output
    assert len(Cohort.load(out)) == 80 and (out / "truth.csv").is_file()
    res = runner.invoke(app, ["validate", str(out)])
    assert res.exit_code == 0, res.output
    bad = runner.invoke(app, ["synth", "--layout", "tcga", "--out", str(out), "--seed", "-1"])
    assert bad.exit_code == 2 and "seed must be a non-negative integer" in bad.output
