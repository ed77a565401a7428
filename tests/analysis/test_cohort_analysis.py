"""Cohort analysis with known answers: risk groups, Kaplan-Meier, subgroup audit, external
validation. Predictions come from the synthetic ground truth where no model is needed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multimodal
from multimodal import cohort_analysis as ca
from multimodal.exceptions import DataError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("analysis")
    res = generate_cohort(out, n_patients=1200, seed=2, with_images=False, n_genes=30)
    return multimodal.Cohort.load(out / "cohort.yaml"), res.ground_truth


def _truth(gt: pd.DataFrame) -> pd.DataFrame:
    return gt[["patient_id", "time", "event"]].assign(risk=gt["true_risk"].to_numpy())


def test_perfect_risk_separates_kaplan_meier_curves(synthetic):
    cohort, gt = synthetic
    groups = ca.risk_groups(_truth(gt), cohort, n_groups=3, fit_on="self")
    assert list(groups.groupby("label").size().reindex(["low", "intermediate", "high"])) == [
        400,
        400,
        400,
    ]
    km = ca.km_by_group(groups, horizon=36.0)
    assert km["logrank_p"].iloc[0] < 1e-20
    assert km["surv_at_horizon"].is_monotonic_decreasing
    assert (km["rmst_diff"].iloc[1:] < 0).all() and (km["rmst_diff_high"].iloc[1:] < 0).all()
    assert km["rmst_diff"].iloc[0] == 0.0 and km["logrank_p_vs_low"].iloc[2] < 1e-20
    # a risk unrelated to the outcome does not separate them
    noise = _truth(gt).assign(risk=np.random.default_rng(0).normal(size=len(gt)))
    km_noise = ca.km_by_group(ca.risk_groups(noise, cohort, fit_on="self"), horizon=36.0)
    assert km_noise["logrank_p"].iloc[0] > 0.001


def test_cut_points_come_from_training_rows_only(synthetic):
    cohort, gt = synthetic
    truth = _truth(gt)
    ids = truth["patient_id"].to_numpy()
    folds = []
    for k in range(2):
        val = ids[k::2]
        train = truth[~truth["patient_id"].isin(val)]
        folds.append(train.assign(fold=k, split="train"))
        # validation risks shifted far above every training risk: all "high"
        folds.append(
            truth[truth["patient_id"].isin(val)].assign(
                fold=k, split="val", risk=lambda d: d["risk"] + 100
            )
        )
    preds = pd.concat(folds, ignore_index=True)
    groups = ca.risk_groups(preds, cohort, n_groups=3)
    assert len(groups) == len(truth) and groups["patient_id"].is_unique
    assert (groups["label"] == "high").all()
    train0 = preds[(preds.fold == 0) & (preds.split == "train")]["risk"]
    cuts0 = np.quantile(train0 - train0.mean(), [1 / 3, 2 / 3])  # risks centred per fold
    g0 = groups[groups["fold"] == 0]
    assert g0["lower"].iloc[0] == pytest.approx(cuts0[1])
    # explicit cut-points
    fixed = ca.risk_groups(truth, cohort, cut_points=[0.0])
    assert set(fixed["label"]) == {"low", "high"}
    assert ((fixed["risk"] >= 0) == (fixed["label"] == "high")).all()
    with pytest.raises(DataError, match="training rows"):
        ca.risk_groups(truth, cohort)


def test_subgroup_with_shuffled_predictions_is_flagged(synthetic):
    cohort, gt = synthetic
    truth = _truth(gt)
    site = cohort.patients["site"].reindex(truth["patient_id"]).to_numpy()
    bad = site == "site_B"
    rng = np.random.default_rng(1)
    truth.loc[bad, "risk"] = rng.permutation(truth.loc[bad, "risk"].to_numpy())
    report = ca.subgroup_report(truth, cohort, n_boot=100, horizon=24.0)
    assert report.iloc[0]["variable"] == "all"
    flagged = report[report["flag"]]
    assert list(zip(flagged["variable"], flagged["level"])) == [("site", "site_B")]
    row = flagged.iloc[0]
    assert row["c_index"] < 0.6 and row["c_high"] < report.iloc[0]["c_index"]
    assert set(report["variable"]) >= {"all", "sex", "age_band", "site", "stage", "modalities"}
    levels = set(report.loc[report["variable"] == "age_band", "level"])
    assert levels <= {"<50", "50-59", "60-69", "70+"}
    n_sex = report.loc[report["variable"] == "sex", "n"].sum()
    assert n_sex == len(truth)
    assert report["event_rate"].between(0, 1).all()
    # stage is prognostic: every stage ranks the true risk worse than the whole cohort does, but
    # each is judged against the C within stages, so none is flagged
    stage = report[report["variable"] == "stage"]
    big_stages = stage[stage["n"] >= 100]
    assert (big_stages["c_index"] < report.iloc[0]["c_index"]).all()
    assert stage["c_reference"].iloc[0] < report.iloc[0]["c_index"]
    assert not stage["flag"].any()


def test_subgroup_report_and_groups_from_a_run(run_dir, synthetic_small):
    report = ca.subgroup_report(run_dir, synthetic_small, n_boot=0, min_n=10)
    assert report.loc[0, "n"] == len(synthetic_small.patients)  # out-of-fold: each patient once
    assert report["predicted_surv"].between(0, 1).all()
    assert np.isfinite(report["calibration_error"]).all()
    groups = ca.risk_groups(run_dir, synthetic_small, n_groups=2)
    assert len(groups) == len(synthetic_small.patients)
    out = groups.to_csv(index=False)
    assert out.startswith("patient_id")


def test_external_validation_reports_calibration_drift(run_dir, synthetic_small, tmp_path):
    from multimodal.data.synth import generate_cohort

    model = multimodal.load_run(run_dir)
    generate_cohort(tmp_path / "b", n_patients=200, seed=7, with_images=False, n_genes=30)
    cohort_b = multimodal.Cohort.load(tmp_path / "b" / "cohort.yaml")
    same = ca.external_validation(model, cohort_b, horizons=[12.0, 24.0], n_boot=50)
    assert set(same["cohort"]) == {"development", "external", "drift"}
    # a cohort whose patients die twice as fast: same ranking, worse survival
    faster = cohort_b.subset(cohort_b.patients.index)
    faster.patients = faster.patients.assign(time=faster.patients["time"] / 2)
    shifted = ca.external_validation(model, faster, horizons=[12.0, 24.0], n_boot=50)

    def get(table, cohort, metric, h=None):
        sel = (table.cohort == cohort) & (table.metric == metric)
        sel &= table.horizon.isna() if h is None else table.horizon == h
        return float(table.loc[sel, "value"].iloc[0])

    # C-index only depends on the order of the times
    assert get(shifted, "external", "c_index") == pytest.approx(get(same, "external", "c_index"))
    for h in (12.0, 24.0):
        assert (
            get(shifted, "drift", "calibration_drift", h)
            > get(same, "drift", "calibration_drift", h) + 0.05
        )
        assert get(shifted, "external", "observed_surv", h) < get(
            same, "external", "observed_surv", h
        )
        assert get(same, "external", "predicted_surv", h) == pytest.approx(
            get(shifted, "external", "predicted_surv", h)
        )


def test_rmst_variance_matches_the_bootstrap():
    """The estimator's variance (not lifelines' ``return_variance``, which is the variance of
    min(T, horizon) in the population) agrees with a bootstrap of the KM RMST."""
    from multimodal.cohort_analysis.groups import rmst_variance
    from multimodal.survival.curves import kaplan_meier

    def rmst(t, e, tau):
        km_t, km_s = kaplan_meier(t, e)
        keep = km_t <= tau
        edges = np.concatenate([[0.0], km_t[keep], [tau]])
        return float(np.sum(np.concatenate([[1.0], km_s[keep]]) * np.diff(edges)))

    rng = np.random.default_rng(3)
    t = np.round(rng.exponential(10, 200), 1) + 0.1
    e = rng.random(200) < 0.7
    boots = []
    for _ in range(400):
        i = rng.integers(0, 200, 200)
        boots.append(rmst(t[i], e[i], 15.0))
    assert rmst_variance(t, e, 15.0) == pytest.approx(np.var(boots), rel=0.25)


def test_rmst_variance_without_censoring_is_the_variance_of_the_mean():
    """Reference value: with every event observed the KM RMST is the mean of min(T, horizon) and
    the Greenwood-type variance reduces exactly to its plug-in variance sum((x - mean)^2) / n^2
    (ties included)."""
    from multimodal.cohort_analysis.groups import rmst_variance

    rng = np.random.default_rng(0)
    t = np.round(rng.exponential(10, 50))  # rounded: tied event times
    x = np.minimum(t, 15.0)
    expected = np.sum((x - x.mean()) ** 2) / len(x) ** 2
    assert rmst_variance(t, np.ones(50, bool), 15.0) == pytest.approx(expected, rel=1e-12)


def test_predictions_of_patients_outside_the_cohort_are_named(synthetic):
    cohort, gt = synthetic
    frame = pd.DataFrame(
        {"patient_id": [gt["patient_id"].iloc[0], "NOT-A-PATIENT"], "risk": [0, 1]}
    )
    with pytest.raises(DataError, match=r"1 patient\(s\) .* not in cohort.*'NOT-A-PATIENT'"):
        ca.risk_groups(frame, cohort, fit_on="self")
