"""The dashboard's data layer: run folder reading, risk groups, KM/log-rank, metrics,
calibration, filters, patient curves, evidence, out-of-distribution flags, the launcher."""

from __future__ import annotations

import io
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

import multimodal
from multimodal.dashboard import cohort_stats, evidence, images, launch, ood, patient, vocabulary
from multimodal.dashboard.new_patient import (
    NEW_PATIENT_ID,
    TRAINING_MARGIN,
    NewPatient,
    build_cohort,
    genomics_template,
    input_limits,
    missing_handling,
    modality_status,
    model_inputs,
    read_genomics_row,
    refusals,
)
from multimodal.dashboard.run_data import load_run_data
from multimodal.exceptions import DataError, MultimodalError, RunFolderError


def fake_run(folder, n=200, folds=2, seed=0, extra_endpoint=False):
    """A run folder with only config/metrics/predictions (no model): what the cohort view reads."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"endpoint": "os", "_meta": {"modalities": ["clinical"]}})
    )
    ids = [f"P{i:05d}" for i in range(n)]
    x = rng.normal(size=n)
    time = rng.exponential(20 * np.exp(-x))
    event = rng.random(n) < 0.7
    fold_of = np.arange(n) % folds
    rows = []
    for k in range(folds):
        for i in range(n):
            split = "val" if fold_of[i] == k else "train"
            r = (
                x[i] + 3.0 * k
            )  # each fold model has its own offset: risks only compare within a fold
            s = np.exp(-np.array([6.0, 12.0, 24.0]) / 20 * np.exp(x[i]))
            row = {
                "patient_id": ids[i],
                "time": time[i],
                "event": int(event[i]),
                "risk": r,
                "surv_6": s[0],
                "surv_12": s[1],
                "surv_24": s[2],
                "fold": k,
                "split": split,
            }
            if extra_endpoint:
                row.update(
                    {
                        "risk_pfs": r + 0.5,
                        "pfs_time": time[i] / 2,
                        "pfs_event": 1,
                        "surv_pfs_6": s[0] ** 2,
                        "surv_pfs_12": s[1] ** 2,
                    }
                )
            rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "predictions.csv", index=False)
    metrics = {
        "endpoint": "os",
        "c_index": 0.7,
        "folds": [{"fold": k, "c_index": 0.68 + 0.02 * k, "ibs": 0.2} for k in range(folds)],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


# --------------------------------------------------------------------------- run folder
def test_missing_and_corrupt_run_folders_raise_clear_errors(tmp_path):
    with pytest.raises(RunFolderError, match="does not exist"):
        load_run_data(tmp_path / "nope")
    with pytest.raises(RunFolderError, match=r"config\.yaml is missing"):
        load_run_data(tmp_path)
    run = fake_run(tmp_path / "run")
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="not valid JSON"):
        load_run_data(run)
    (run / "metrics.json").unlink()
    (run / "predictions.csv").write_text("patient_id,foo\nA,1\n")
    with pytest.raises(RunFolderError, match="lacks column"):
        load_run_data(run)
    (run / "predictions.csv").unlink()
    with pytest.raises(RunFolderError, match="training did not finish"):
        load_run_data(run)


def test_out_of_fold_rows_are_centred_per_fold(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run"))
    oof = run.oof()
    assert len(oof) == 200 and oof.index.is_unique
    pred = pd.read_csv(tmp_path / "run" / "predictions.csv", dtype={"patient_id": str})
    val = pred[pred["split"] == "val"].set_index("patient_id")
    assert np.allclose(oof["risk"], val.loc[oof.index, "risk"])
    # the per-fold offset of 3.0 is gone after centring on the fold's training mean
    for k in (0, 1):
        train_mean = pred.loc[(pred["fold"] == k) & (pred["split"] == "train"), "risk"].mean()
        part = oof[oof["fold"] == k]
        assert np.allclose(part["risk_centered"], part["risk"] - train_mean)
    assert oof["percentile"].between(0, 100).all()
    assert run.eval_times == [6.0, 12.0, 24.0]
    assert run.notes and "cohort" in run.notes[-1]  # no cohort next to this run


def test_endpoints_are_read_from_the_prediction_columns(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run", extra_endpoint=True))
    assert [e.name for e in run.endpoints] == ["os", "pfs"]
    pfs = run.endpoint("pfs")
    assert pfs.risk == "risk_pfs" and pfs.time == "pfs_time" and sorted(pfs.surv) == [6.0, 12.0]
    assert run.oof("pfs")["time"].max() < run.oof("os")["time"].max()


# --------------------------------------------------------------------------- cohort statistics
def test_risk_groups_use_training_cut_points(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run", n=300))
    groups = cohort_stats.risk_groups(run, 3)
    pred = run.predictions
    for k in (0, 1):
        train = pred.loc[(pred["fold"] == k) & (pred["split"] == "train"), "risk"]
        cuts = np.quantile(train, [1 / 3, 2 / 3])
        part = run.oof()[run.oof()["fold"] == k]
        expected = np.searchsorted(cuts, part["risk"], side="right")
        assert (groups.loc[part.index].cat.codes.to_numpy() == expected).all()
    assert list(groups.cat.categories) == ["low", "intermediate", "high"]


def test_km_and_logrank_match_lifelines(tmp_path):
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    run = load_run_data(fake_run(tmp_path / "run"))
    groups = cohort_stats.risk_groups(run, 2)
    res = cohort_stats.survival_by_group(run, groups)
    oof = run.oof()
    ref = multivariate_logrank_test(oof["time"], groups.astype(str), oof["event"])
    assert res.p_value == pytest.approx(ref.p_value, rel=1e-9)
    assert res.p_value < 0.01  # the simulated risk separates the groups
    high = groups == "high"
    kmf = KaplanMeierFitter().fit(oof.loc[high, "time"], oof.loc[high, "event"])
    curve = res.curves[res.curves["group"] == "high"]
    assert np.allclose(curve["survival"], kmf.survival_function_.iloc[:, 0])
    assert res.counts.loc["high", "patients"] == int(high.sum())
    assert res.fitted_on_training


def test_metric_table_has_one_c_index_with_confidence_intervals(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run"))
    table = cohort_stats.metric_table(run).set_index("metric")
    assert [m for m in table.index if m.startswith("C-index")] == ["C-index (mean of 2 folds)"]
    c = table.loc["C-index (mean of 2 folds)"]
    assert c["estimate"] == pytest.approx(0.69)  # metrics.json's folds: 0.68 and 0.70
    assert c["95% CI low"] < 0.69 < c["95% CI high"]
    assert "0.5 = chance" in c["scale"] and "mean over folds" in c["method"]
    summary = cohort_stats.c_index_summary(run)
    assert summary["estimate"] == pytest.approx(0.69) and summary["n_folds"] == 2
    assert "pooled" in cohort_stats.C_INDEX_NOTE


def test_filtered_c_index_is_recomputed_per_fold(tmp_path):
    from multimodal.survival.metrics import harrell_c

    run = load_run_data(fake_run(tmp_path / "run"))
    oof = run.oof()
    ids = oof.index[: len(oof) // 2 + 17]
    expected = np.mean(
        [
            harrell_c(p["time"].to_numpy(), p["event"].to_numpy(), p["risk"].to_numpy())
            for _, p in oof.loc[ids].groupby("fold")
        ]
    )
    table = cohort_stats.metric_table(run, ids=ids).set_index("metric")
    assert table.loc["C-index (mean of 2 folds)", "estimate"] == pytest.approx(expected)
    assert "filtered" in table.loc["C-index (mean of 2 folds)", "method"]


def test_one_c_index_matches_the_run_metrics(tiny_run):
    """The per-fold C-indices recomputed from predictions.csv equal metrics.json's: the sidebar
    and the table show the same number with or without per-fold metrics."""
    run = load_run_data(tiny_run)
    recomputed = cohort_stats._fold_c_indices(run, None, None)
    stored = [f["c_index"] for f in run.metrics["folds"]]
    np.testing.assert_allclose(recomputed, stored, atol=1e-9)


def test_numbers_at_risk_match_lifelines(tmp_path):
    from lifelines import KaplanMeierFitter

    run = load_run_data(fake_run(tmp_path / "run"))
    groups = cohort_stats.risk_groups(run, 2)
    res = cohort_stats.survival_by_group(run, groups, ticks=[0.0, 10.0, 20.0, 40.0])
    assert list(res.at_risk.columns) == [0.0, 10.0, 20.0, 40.0]
    oof = run.oof()
    for g in ("low", "high"):
        part = oof[groups == g]
        assert res.at_risk.loc[g, 0.0] == len(part)
        kmf = KaplanMeierFitter().fit(part["time"], part["event"])
        # lifelines' at_risk at its event-table times: patients with time >= t
        for t in (10.0, 20.0, 40.0):
            later = kmf.event_table.index[kmf.event_table.index >= t]
            expected = int(kmf.event_table.loc[later[0], "at_risk"]) if len(later) else 0
            assert res.at_risk.loc[g, t] == expected
    assert list(res.counts.columns) == ["patients", "events", "median survival (months)"]
    default = list(cohort_stats.survival_by_group(run, groups).at_risk.columns)
    assert default[0] == 0.0 and all(t % 12 == 0 for t in default)  # whole years of months


def test_calibration_and_filters(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run"))
    cal = cohort_stats.calibration(run, 12.0, n_groups=5)
    assert len(cal.table) == 5 and cal.table["n"].sum() == 200
    # round horizons between evaluation times: S(t) interpolated between them
    oof = run.oof()
    assert np.allclose(run.survival_at(9.0), (oof["surv_6"] + oof["surv_12"]) / 2)
    assert np.allclose(run.survival_at(12.0), oof["surv_12"])
    assert np.allclose(run.survival_at(3.0), (1 + oof["surv_6"]) / 2)
    assert run.survival_at(30.0).isna().all()  # beyond the last evaluation time
    cohort_stats.calibration(run, 18.0, n_groups=5)
    with pytest.raises(KeyError, match="up to 24"):
        cohort_stats.calibration(run, 30.0)
    assert cohort_stats.calibration_horizons(run) == {"1 year": 12.0}
    assert cohort_stats.calibration_horizons(run, max_time=6.0) == {"6 months": 6.0}
    attrs = pd.DataFrame(
        {
            "sex": ["F", "M", "F"],
            "has_ct": [True, False, False],
            "event": [1, 0, 1],
            "time": [1.0, 2, 3],
        },
        index=["a", "b", "c"],
    )
    assert list(cohort_stats.apply_filters(attrs, {"sex": ["F"]})) == ["a", "c"]
    assert list(cohort_stats.apply_filters(attrs, {"sex": []}, ["ct"])) == ["a"]
    assert cohort_stats.cohort_summary(attrs, ["ct"])["coverage_ct"] == pytest.approx(1 / 3)


def test_cohort_view_numbers_are_fast_on_10000_patients(tmp_path):
    import time

    run = load_run_data(fake_run(tmp_path / "run", n=10_000, folds=5))
    start = time.perf_counter()
    groups = cohort_stats.risk_groups(run, 3)
    cohort_stats.survival_by_group(run, groups)
    cohort_stats.calibration(run, 12.0)
    cohort_stats.cohort_summary(cohort_stats.patient_attributes(run), [])
    assert time.perf_counter() - start < 5.0  # about 0.3 s on the 2-core CI machine


# --------------------------------------------------------------------------- patient curves
def test_conditional_survival_is_a_ratio_of_survivals():
    t = np.linspace(0, 60, 61)
    s = np.exp(-t / 30)
    cs = patient.conditional_survival(t, s, 12.0)
    # exponential survival is memoryless: S(12 + u) / S(12) = S(u)
    assert np.allclose(cs["s0"], np.exp(-cs["time"] / 30), atol=1e-9)
    assert cs["time"].iloc[0] == 0 and cs["s0"].iloc[0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        patient.conditional_survival(t, s, -1)


def test_horizons_and_similar_patients():
    assert patient.horizons_for("months") == {"1 year": 12.0, "3 years": 36.0, "5 years": 60.0}
    assert patient.horizons_for("days")["1 year"] == pytest.approx(365.25)
    assert patient.horizons_for("years") == {"1 year": 1.0, "3 years": 3.0, "5 years": 5.0}
    oof = pd.DataFrame({"percentile": [10.0, 50.0, 52.0, 90.0, 49.0]}, index=list("abcde"))
    assert set(patient.similar_patients(oof, 50.0, k=2, exclude="b")) == {"c", "e"}


def test_fold_predictions_give_the_ensemble_and_its_spread(tiny_model, tiny_cohort):
    ids = list(tiny_cohort.patients.index[:3])
    grid = patient.curve_grid(40.0, n=20, extra=[12.0])
    pred = patient.fold_predictions(tiny_model, tiny_cohort.subset(ids), grid)
    assert pred.fold_survival.shape == (2, 3, len(grid))
    ens = tiny_model.predict(tiny_cohort.subset(ids), grid)
    assert np.allclose(pred.fold_survival.mean(0), ens[[f"surv_{t:g}" for t in grid]], atol=1e-5)
    assert np.allclose(pred.fold_risk.mean(0), ens["risk"], atol=1e-5)
    c = pred.curve(ids[0], fold=pred.folds[1])
    assert np.allclose(c["survival"], pred.fold_survival[1, 0])
    assert (c["lower"] <= c["survival"] + 1e-9).all() and (c["survival"] <= c["upper"] + 1e-9).all()
    assert (np.diff(c["mean"]) <= 1e-6).all()  # S(t) non-increasing
    s, lo, hi = pred.at(ids[0], 12.0)
    assert lo <= s <= hi


def test_vocabulary_units_and_round_numbers():
    assert vocabulary.horizon_label(36.0, "months") == "3 years"
    assert vocabulary.horizon_label(18.0, "months") == "18 months"
    assert vocabulary.horizon_label(365.25, "days") == "1 year"
    assert vocabulary.fmt_time(float("nan"), "months") == "not reached"
    assert vocabulary.fmt_time(23.44, "months") == "23.4 months"
    assert vocabulary.fmt_pct(0.114) == "11%" and vocabulary.fmt_hr(1.847) == "1.85×"
    assert vocabulary.at_risk_ticks(50.0, "months") == [0, 12.0, 24.0, 36.0, 48.0]
    assert vocabulary.at_risk_ticks(300.0, "months")[:3] == [0, 60.0, 120.0]
    assert vocabulary.at_risk_ticks(3.0, "years") == [0, 1.0, 2.0, 3.0]
    assert vocabulary.at_risk_ticks(1.5, "years") == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert vocabulary.explanation_horizon("months", 40.0) == ("3 years", 36.0)
    assert vocabulary.explanation_horizon("months", 20.0) == ("1 year", 12.0)
    assert vocabulary.hazard_ratio(np.log(2.0) + 0.3, 0.3) == pytest.approx(2.0)
    sentence = vocabulary.effect_sentence("report", 4.04, "3 years")
    assert sentence == "report raises the 3-year event probability by 4.0 points"
    assert "lowers" in vocabulary.effect_sentence("ct", -1.0, "1 year")


def test_points_are_exact_under_proportional_hazards():
    # S(t | x) = S0(t) ** exp(r): removing a share d of r gives S0 ** exp(r - d)
    s0, r, d = 0.8, 0.7, 0.4
    with_it, without = s0 ** np.exp(r), s0 ** np.exp(r - d)
    expected = 100 * ((1 - with_it) - (1 - without))
    assert vocabulary.points_from_risk(d, with_it) == pytest.approx(expected)
    assert vocabulary.points_from_risk(0.0, 0.5) == 0.0
    assert vocabulary.points_from_risk(-d, with_it) < 0  # lowers it
    both = vocabulary.points_from_risk(np.array([d, 0.0]), with_it)
    np.testing.assert_allclose(both, [expected, 0.0])


def test_predictions_of_the_run_need_no_model(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run"))
    oof = run.oof()
    ids = list(oof.index[:3])
    pred = patient.oof_prediction(run, ids)
    assert pred.fold_survival.shape == (2, 3, 4) and list(pred.times) == [0.0, 6.0, 12.0, 24.0]
    table = pd.read_csv(tmp_path / "run" / "predictions.csv", dtype={"patient_id": str})
    for pid in ids:
        fold = int(oof.loc[pid, "fold"])
        c = pred.curve(pid, fold)
        row = table[(table["patient_id"] == pid) & (table["fold"] == fold)].iloc[0]
        assert np.allclose(c["survival"], [1.0, row["surv_6"], row["surv_12"], row["surv_24"]])
        assert (c["lower"] <= c["survival"] + 1e-12).all()
        # the hazard ratio of the out-of-fold model: against its median training patient
        assert pred.hazard_ratios(pid, fold)[0] == pytest.approx(oof.loc[pid, "hazard_ratio"])
        p, lo, hi = pred.event_probability(pid, 12.0, fold)
        assert p == pytest.approx(1 - row["surv_12"]) and lo <= p <= hi
    assert np.isnan(pred.at(ids[0], 36.0)[0])  # beyond the saved evaluation times
    train = table[(table["split"] == "train") & (table["fold"] == 0)]["risk"]
    val = oof[oof["fold"] == 0]
    assert np.allclose(val["hazard_ratio"], np.exp(val["risk"] - train.median()))


# --------------------------------------------------------------------------- evidence
def test_computed_evidence_shapley_adds_up(tiny_model, tiny_cohort, caplog):
    avail = tiny_cohort.availability()
    pid = str(avail.index[avail.all(axis=1)][0])  # a patient with every modality
    with caplog.at_level(logging.DEBUG):
        ev = evidence.compute_evidence(tiny_model, tiny_cohort, pid)
    assert pid not in caplog.text  # no patient identifiers in the logs
    assert ev.source == "computed"
    assert set(ev.contributions["modality"]) == set(tiny_model.modalities)
    # efficiency: Shapley values sum to risk(all modalities) - risk(none), by the public
    # prediction path (a patient without any modality's data); float32 forward passes
    one = tiny_cohort.subset([pid])
    full = tiny_model.predict(one)["risk"].iloc[0]
    empty = tiny_model.predict(multimodal.Cohort(one.patients, {}))["risk"].iloc[0]
    assert ev.contributions["shapley"].sum() == pytest.approx(full - empty, abs=1e-4)
    text = tiny_cohort.sources["report"].texts()[pid]
    assert ev.text == text and len(ev.spans) >= 2
    for _, s in ev.spans.iterrows():
        assert text[int(s["start"]) : int(s["end"])] == s["sentence"]
    assert not ev.groups.empty and 0 < len(ev.features) <= 12
    sal = ev.saliency["ct"]
    assert sal.shape == ev.saliency_images["ct"].shape == (1, 8, 8, 8)  # the preprocessed CT
    assert np.isfinite(sal).all()
    # the quick evidence is the explain step on a smaller budget: same modalities and sentences
    full_ev = evidence.evidence_from_explanation(tiny_model.explain(one, [pid]), pid, text)
    pd.testing.assert_frame_equal(ev.contributions, full_ev.contributions, atol=1e-9)
    pd.testing.assert_frame_equal(ev.spans, full_ev.spans, atol=1e-9)


def test_quick_saliency_is_the_explain_steps_on_a_coarse_grid(tiny_model, tiny_cohort):
    pid = str(tiny_cohort.sources["ct"].patient_ids[0])
    sal = evidence.image_saliency(tiny_model, tiny_cohort, pid, "ct")
    assert sal.shape == (1, 8, 8, 8) and np.isfinite(sal).all()
    # disjoint boxes of a quarter of the side: constant on each 2x2x2 block
    blocks = sal[0].reshape(4, 2, 4, 2, 4, 2)
    block_means = np.broadcast_to(blocks.mean(axis=(1, 3, 5), keepdims=True), blocks.shape)
    np.testing.assert_allclose(blocks, block_means, atol=1e-6)
    assert evidence.image_saliency(tiny_model, tiny_cohort, pid, "report") is None


def test_evidence_is_read_from_the_explanations_folder(tmp_path):
    folder = tmp_path / "explanations"
    (folder / "saliency").mkdir(parents=True)
    pd.DataFrame(
        {
            "patient_id": ["A", "A", "B"],
            "modality": ["clinical", "ct", "clinical"],
            "loo_delta": [0.2, -0.1, 0.3],
            "shapley": [0.25, -0.05, 0.3],
        }
    ).to_csv(folder / "modality_contributions.csv", index=False)
    pd.DataFrame(
        {
            "patient_id": ["A", "A"],
            "modality": ["genomics"] * 2,
            "feature": ["G1", "G2"],
            "group": ["p1", "p1"],
            "attribution": [0.1, 0.2],
        }
    ).to_csv(folder / "features.csv", index=False)
    pd.DataFrame(
        {"patient_id": ["A"], "sentence_index": [0], "start": [0], "end": [5], "attribution": [0.4]}
    ).to_csv(folder / "text_spans.csv", index=False)
    np.save(folder / "saliency" / "A__ct.npy", np.ones((1, 4, 4, 4), np.float32))
    tables = evidence.read_explanation_tables(tmp_path)
    ev = evidence.evidence_from_files(tmp_path, tables, "A", text="Hello world.")
    assert ev.source == "explanations"
    assert list(ev.contributions["modality"]) == ["clinical", "ct"]
    assert ev.groups.set_index("group").loc["p1", "attribution"] == pytest.approx(0.3)
    assert ev.spans["sentence"].iloc[0] == "Hello"
    assert ev.saliency["ct"].shape == (1, 4, 4, 4)
    assert evidence.evidence_from_files(tmp_path, tables, "nobody") is None
    assert evidence.read_explanation_tables(tmp_path / "elsewhere") is None


def test_evidence_in_points_and_saliency_availability(tiny_model):
    contributions = pd.DataFrame(
        {"modality": ["clinical", "ct"], "loo_delta": [0.2, -0.1], "shapley": [0.3, -0.05]}
    )
    ev = evidence.Evidence(
        "computed",
        contributions,
        features=pd.DataFrame({"feature": ["G1"], "attribution": [0.1]}),
        spans=pd.DataFrame({"start": [0], "end": [5], "attribution": [-0.2]}),
    )
    out = evidence.in_points(ev, 0.7)
    expected = vocabulary.points_from_risk(0.3, 0.7)
    assert out.contributions["points"].iloc[0] == pytest.approx(expected)
    assert (out.contributions["method"] == "Shapley value").all()
    assert out.spans["points"].iloc[0] < 0 < out.features["points"].iloc[0]
    assert "points" not in ev.contributions  # the cached evidence is not changed
    assert evidence.saliency_unavailable(tiny_model, "ct") is None  # small_cnn reads the voxels
    assert "not an image" in evidence.saliency_unavailable(tiny_model, "report")

    from types import SimpleNamespace

    spec = SimpleNamespace(kind="imaging", in_features=64)  # an image_embedding encoder's spec
    network = SimpleNamespace(specs={"ct": spec})
    frozen = SimpleNamespace(modalities=["ct"], folds=[SimpleNamespace(model=network)])
    assert "precomputed embeddings" in evidence.saliency_unavailable(frozen, "ct")


def test_saliency_overlay_and_slices():
    vol = np.random.default_rng(0).normal(size=(10, 12, 14)).astype(np.float32)
    sal = images.resize_map(np.arange(8, dtype=float).reshape(1, 2, 2, 2), vol.shape)
    assert sal.shape == vol.shape
    for plane in images.PLANES:
        sl = images.slice_of(vol, plane)
        rgb = images.overlay(sl, images.slice_of(sal, plane))
        assert rgb.dtype == np.uint8 and rgb.shape == (*sl.shape, 3)
    assert images.slice_of(vol, "axial").shape == (12, 10)


# --------------------------------------------------------------------------- new patients, OOD
def test_new_patient_prediction_and_ood_flags(tiny_model, tiny_cohort, tmp_path):
    inputs = model_inputs(tiny_model)
    assert inputs.kinds["clinical"] == "clinical" and "age" in inputs.numeric
    genes = read_genomics_row(b"patient_id,GENE0000,GENE0001\nX,5.0,7.0\n")
    nifti = next(iter(tiny_cohort.sources["ct"].table["path"]))
    new = NewPatient(
        clinical={"age": 115.0, "sex": "F", "stage": "V"},
        report="Tumour grade 3. Margins involved.",
        genomics=genes,
        image=("scan.nii.gz", open(nifti, "rb").read()),
    )
    cohort = build_cohort(inputs, new, tmp_path / "np")
    assert list(cohort.patients.index) == [NEW_PATIENT_ID]
    assert set(cohort.modalities) == {"clinical", "genomics", "report", "ct"}
    pred = patient.fold_predictions(tiny_model, cohort, [0.0, 12.0, 24.0])
    assert np.isfinite(pred.fold_risk).all()
    profile = ood.training_profile(tiny_model, tiny_cohort)
    flags = ood.check_patient(profile, new.clinical, genes, new.present(inputs))
    text = " ".join(f.message for f in flags)
    assert "age = 115 is far outside" in text
    assert "stage = 'V' was never seen" in text
    ok = ood.check_patient(profile, {"age": 60.0, "sex": "F"}, None, {"clinical"})
    assert not [f for f in ok if f.modality == "clinical"]
    missing = ood.check_patient(profile, {}, None, {"genomics"})
    assert any("clinical is missing" in f.message for f in missing)  # every training patient had it
    with pytest.raises(DataError, match="unsupported file type"):
        build_cohort(
            inputs, NewPatient(clinical={"age": 60.0}, image=("x.bmp", b"")), tmp_path / "bad"
        )
    with pytest.raises(DataError, match="no data row"):
        read_genomics_row(b"GENE0000\n")
    assert pred.status[NEW_PATIENT_ID] == "warning"  # an age outside the training range warns
    assert set(pred.modalities[NEW_PATIENT_ID]) == {"clinical", "genomics", "report", "ct"}


def test_new_patient_limits_refuse_implausible_values(tiny_model):
    inputs = model_inputs(tiny_model)
    lo, hi = inputs.ranges["age"]
    lim = input_limits(inputs)["age"]
    width = hi - lo
    assert lim.low == pytest.approx(max(0.0, lo - TRAINING_MARGIN * width))
    assert lim.high == pytest.approx(min(120.0, hi + TRAINING_MARGIN * width))
    assert "plausible 0 to 120 years" in lim.describe()
    for age in (500.0, -5.0, lim.high + 0.5):
        (msg,) = refusals(inputs, NewPatient(clinical={"age": age, "sex": "F"}))
        assert f"age = {age:g} years is refused" in msg and "leave it empty" in msg
    assert refusals(inputs, NewPatient(clinical={"age": float("inf")}))
    assert refusals(inputs, NewPatient(clinical={"age": "abc"}))
    assert refusals(inputs, NewPatient(clinical={"age": None, "sex": "F"})) == []
    assert refusals(inputs, NewPatient(clinical={"age": (lo + hi) / 2})) == []


def test_new_patient_missing_values_and_modalities(tiny_model, tmp_path):
    inputs = model_inputs(tiny_model)
    new = NewPatient(clinical={"age": None, "sex": "F", "stage": None}, report="  ")
    notes = " ".join(missing_handling(inputs, new))
    assert "age unknown: passed to the model as missing" in notes
    assert "stage unknown" in notes
    status = modality_status(inputs, new).set_index("modality")
    assert status.loc["clinical", "status"] == "used"
    assert status.loc["report", "status"] == "not used"
    assert status.loc["report", "detail"] == "no report text given"
    assert status.loc["genomics", "status"] == "not used"
    # the missing age reaches the model as missing, not as a number
    cohort = build_cohort(inputs, new, tmp_path / "np")
    assert cohort.sources["clinical"].table["age"].isna().all()
    assert "report" not in cohort.sources
    pred = patient.fold_predictions(tiny_model, cohort, [0.0, 12.0])
    assert "report" not in pred.modalities[NEW_PATIENT_ID]
    # the genomics template: patient_id and every gene of the model, readable when filled
    template = pd.read_csv(io.StringIO(genomics_template(inputs)))
    assert list(template.columns) == ["patient_id", *inputs.genes]
    template[inputs.genes[0]] = template[inputs.genes[0]].astype(float)
    template.loc[0, inputs.genes[0]] = 1.5
    row = read_genomics_row(template.to_csv(index=False).encode())
    assert row[inputs.genes[0]] == 1.5 and row.notna().sum() == 1
    filled = NewPatient(clinical={"age": 60.0}, genomics=row)
    used = modality_status(inputs, filled).query("status == 'used'")["modality"].tolist()
    assert "genomics" in used
    assert any("imputed with its training median" in n for n in missing_handling(inputs, filled))


# --------------------------------------------------------------------------- launcher
def test_streamlit_command_binds_loopback_and_is_headless(tmp_path):
    argv = launch.streamlit_command()
    joined = " ".join(argv)
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("app/dashboard.py")
    assert "--server.address 127.0.0.1" in joined and "--server.headless true" in joined
    assert "--browser.gatherUsageStats false" in joined
    with pytest.raises(MultimodalError, match="port"):
        launch.streamlit_command(port=70000)
    env = launch.dashboard_env(tmp_path, None, "s3cret")
    assert env[launch.ENV_RUN] == str(tmp_path.resolve()) and env[launch.ENV_PASSWORD] == "s3cret"
    assert "s3cret" not in joined
    pw = tmp_path / "pw.txt"
    pw.write_text("  hunter2 \n")
    assert launch.read_password_file(pw) == "hunter2"
    pw.write_text("")
    with pytest.raises(MultimodalError, match="empty"):
        launch.read_password_file(pw)
    assert launch.check_password("hunter2", "hunter2") and not launch.check_password(
        "hunter", "hunter2"
    )


def test_cli_refuses_a_missing_run_folder(tmp_path):
    from typer.testing import CliRunner

    from multimodal.cli import app

    res = CliRunner().invoke(app, ["dashboard", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_find_cohort_next_to_the_run(tiny_run, tmp_path):
    run = load_run_data(tiny_run)
    assert run.cohort_path == tiny_run.parent / "cohort" / "cohort.yaml"
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(tiny_run, moved, ignore=shutil.ignore_patterns("checkpoints"))
    # train() recorded where the cohort lives: a moved run still finds it
    assert load_run_data(moved).cohort_path == run.cohort_path.resolve()
    # without that record (an older run) and no cohort/ beside it, nothing is found
    cfg = yaml.safe_load((moved / "config.yaml").read_text())
    cfg["_meta"].pop("cohort_path", None)
    (moved / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert load_run_data(moved).cohort_path is None
    assert load_run_data(moved, tiny_run.parent / "cohort").cohort_path.name == "cohort.yaml"


@pytest.mark.parametrize("seed, rounding", [(0, 2), (1, 0), (2, 1)])
def test_km_curve_equals_lifelines(seed, rounding):
    """The dashboard's own Kaplan-Meier curve and 95% CI (Greenwood, exponential transform) equal
    lifelines' KaplanMeierFitter: tied times, censoring, and a last time with an event (S = 0)."""
    from lifelines import KaplanMeierFitter

    from multimodal.dashboard.cohort_stats import km_curve

    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(10, 80), rounding)
    event = rng.random(80) < 0.6
    event[np.argmax(time)] = seed == 2
    ours = km_curve(time, event)
    kmf = KaplanMeierFitter().fit(time, event)
    sf = kmf.survival_function_.iloc[:, 0]
    ci = kmf.confidence_interval_survival_function_
    np.testing.assert_allclose(ours.time, sf.index.to_numpy(float))
    np.testing.assert_allclose(ours.survival, sf.to_numpy(float), atol=1e-12)
    np.testing.assert_allclose(ours.lower, ci.iloc[:, 0].to_numpy(float), atol=1e-12)
    np.testing.assert_allclose(ours.upper, ci.iloc[:, 1].to_numpy(float), atol=1e-12)
    at_risk = kmf.event_table["at_risk"].reindex(sf.index).to_numpy()
    np.testing.assert_array_equal(ours.at_risk, at_risk)
