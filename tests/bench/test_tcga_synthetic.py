"""bench/tcga_synthetic.py's reference row: the Cox model told the true form of the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multimodal.data import synth_tcga
from multimodal.data.synth_tcga import SPLIT_NAME, write_tcga_cohort
from multimodal.survival.metrics import harrell_c
from tests._bench import bench_module


@pytest.fixture(scope="module")
def bench():
    with bench_module("tcga_synthetic") as module:
        yield module


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "cohort"
    write_tcga_cohort(folder, n_patients=400, seed=3)
    return folder


def _validation_rows(cohort: Path) -> pd.DataFrame:
    clinical = pd.read_csv(cohort / "clinical.csv").set_index("patient_id")
    rows = []
    for k in range(5):
        split = pd.read_csv(cohort / "splits" / SPLIT_NAME / f"fold_{k}.csv")
        ids = split.loc[split["split"] == "val", "patient_id"]
        rows.append(
            pd.DataFrame(
                {
                    "patient_id": ids.to_numpy(),
                    "fold": k,
                    "time": clinical.loc[ids, "survival_months"].to_numpy(),
                    "event": clinical.loc[ids, "event"].to_numpy(),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_oracle_design_holds_exactly_the_acting_inputs(bench, cohort):
    design = bench.oracle_design(cohort)
    clinical = pd.read_csv(cohort / "clinical.csv").set_index("patient_id")
    truth = pd.read_csv(cohort / "truth.csv").set_index("patient_id").loc[design.index]
    acting = pd.read_csv(cohort / "truth_features.csv")
    assert list(design.index) == list(clinical.index)
    genomic = [c for c in design if c.endswith(("_rnaseq", "_cnv", "_mut", "*III/IV"))]
    signature = acting[acting.role == "signature"]
    assert sorted(genomic) == sorted([*acting.column, *(f"{c}*III/IV" for c in signature.column)])
    # the generator's own coefficients on the design give back its parts of the log-hazard
    main = acting[acting.role == "main"]
    np.testing.assert_allclose(
        design[main.column].to_numpy() @ main.log_hazard_ratio.to_numpy(),
        truth["log_hazard_genomics_main"],
        atol=1e-5,
    )
    recorded = clinical["stage"].notna().to_numpy()
    late = design[[f"{c}*III/IV" for c in signature.column]].to_numpy()
    assert (late[recorded].any(axis=1) == clinical["stage"][recorded].isin(["III", "IV"])).all()
    np.testing.assert_allclose(
        (late @ signature.log_hazard_ratio.to_numpy())[recorded],
        truth["log_hazard_genomics_interaction"][recorded],
        atol=1e-5,
    )
    reported = truth["has_report"].astype(bool) | truth["has_report_structured"].astype(bool)
    assert reported.any() and not reported.all()
    findings = (
        synth_tcga._LVI_LOG_HR * design["lvi"]
        + synth_tcga._MARGIN_LOG_HR * design["margin positive"]
        + synth_tcga._DIFFERENTIATION_LOG_HR[1] * design["moderately differentiated"]
        + synth_tcga._DIFFERENTIATION_LOG_HR[2] * design["poorly differentiated"]
        + synth_tcga._NECROSIS_LOG_HR * design["necrosis"]
    )
    np.testing.assert_allclose(findings[reported], truth["log_hazard_report"][reported], atol=1e-9)
    # no report: the findings are unknown, not absent
    assert (design.loc[~reported, "no report"] == 1).all()
    assert (findings[~reported] == 0).all() and (design.loc[reported, "no report"] == 0).all()


def test_oracle_predicts_each_validation_patient_close_to_the_truth(bench, cohort):
    val = _validation_rows(cohort)
    pred = bench.oracle_predictions(cohort, val)
    assert len(pred) == len(val) and set(pred.model) == {bench.ORACLE}
    assert pred.set_index(["fold", "patient_id"]).index.is_unique
    truth = pd.read_csv(cohort / "truth.csv").set_index("patient_id")
    c_oracle, c_truth, corr = [], [], []
    for _, g in pred.groupby("fold"):
        t, e = g.time.to_numpy(float), g.event.to_numpy(bool)
        c_oracle.append(harrell_c(t, e, g.risk.to_numpy(float)))
        true = truth.loc[g.patient_id, "true_log_hazard"].to_numpy(float)
        c_truth.append(harrell_c(t, e, true))
        corr.append(np.corrcoef(g.risk, true)[0, 1])
    # fitted on 320 patients with the right inputs, it ranks nearly as the truth does
    assert np.mean(corr) > 0.8
    assert np.mean(c_truth) - 0.05 < np.mean(c_oracle) <= np.mean(c_truth) + 0.02


def test_parts_table_replaces_one_part_at_a_time(bench, cohort):
    with bench_module("tcga_synthetic_parts") as parts:  # imports tcga_synthetic beside it
        table = parts.parts_table(cohort, alphas=(300.0, 3000.0))
    assert list(table.design) == [
        "told the true form",
        "findings -> report words",
        "findings -> report words",
        "acting columns -> every genomic column",
        "acting columns -> every genomic column",
    ]
    assert list(table.alpha) == ["", "300", "3000", "300", "3000"]
    assert table.C.between(0.5, 1.0).all() and (table.SD > 0).all()
    told = table.C.iloc[0]
    # on 320 training patients, learning which of the 300 genomic columns act costs more than
    # learning the findings from the reports' words
    genomic = table.loc[table.design.str.startswith("acting"), "C"].max()
    words = table.loc[table.design.str.startswith("findings"), "C"].max()
    assert genomic < words <= told + 0.01


def test_seeds_reuse_rescores_earlier_runs_and_sums_them_up(bench, tmp_path, capsys):
    """``--seeds ... --reuse`` on planted predictions: each seed's table, then the summary rows
    with the truth, the reference, ours and the best baseline, and the means."""
    truth_c = {}
    for seed in (0, 5, 6):
        folder = tmp_path / f"cohort_n200_seed{seed}"
        write_tcga_cohort(folder, n_patients=200, seed=seed)
        val = _validation_rows(folder)
        true = pd.read_csv(folder / "truth.csv").set_index("patient_id")["true_log_hazard"]
        noise = np.random.default_rng(seed).normal(size=len(val))
        planted = {"ours": 0.5, "clinical_cox": 2.0, "coxnet": 1.0, "rsf": 4.0}
        frames = [
            val.assign(model=m, risk=true.loc[val.patient_id].to_numpy() + sd * noise)
            for m, sd in planted.items()
        ]
        (folder / "variant_0").mkdir()
        pd.concat(frames).to_csv(folder / "variant_0" / "predictions.csv", index=False)
        truth_c[seed] = np.mean(
            [
                harrell_c(g.time.to_numpy(float), g.event.to_numpy(bool), true.loc[g.patient_id])
                for _, g in val.groupby("fold")
            ]
        )
    code = bench.main(
        ["--seeds", "0", "5", "6", "--reuse", "--n-patients", "200", "--out", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("| Cox model told the true form |") == 3 and "Seed 6:" in out
    summary = [line for line in out.splitlines() if line.startswith(("| 0 |", "| 5 |", "| 6 |"))]
    assert len(summary) == 3 and all("(coxnet) |" in line for line in summary)
    for line in summary:  # the truth column is the truth's C on that seed's validation patients
        seed = int(line.split("|")[1])
        assert line.split("|")[2].strip() == f"{truth_c[seed]:.3f}"
        truth, told, ours, gap, versus = (float(x) for x in line.split("|")[2:7])
        assert abs(gap - (truth - ours)) < 0.0015 and abs(versus - (ours - told)) < 0.0015
    means = [line for line in out.splitlines() if line.startswith("| mean")]
    assert [m.split("|")[1].strip() for m in means] == ["mean", "mean without seed 0"]
    held_out = np.mean([truth_c[5], truth_c[6]])
    assert means[1].split("|")[2].strip() == f"{held_out:.3f}"
