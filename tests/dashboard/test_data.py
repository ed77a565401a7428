"""The dashboard's data layer: run folder reading, risk groups, KM/log-rank, metrics,
calibration, filters, patient curves, evidence, out-of-distribution flags, the launcher."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

import multimodal
from multimodal.dashboard import cohort_stats, evidence, images, launch, ood, patient
from multimodal.dashboard.new_patient import (
    NEW_PATIENT_ID,
    NewPatient,
    build_cohort,
    model_inputs,
    read_genomics_row,
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
    assert res.counts.loc["high", "n"] == int(high.sum())
    assert res.fitted_on_training


def test_metric_table_has_confidence_intervals(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run"))
    table = cohort_stats.metric_table(run, n_boot=50).set_index("metric")
    pooled = table.loc["C-index (pooled out-of-fold)"]
    assert pooled["ci_low"] < pooled["estimate"] < pooled["ci_high"]
    per_fold = table.loc["C-index (mean of 2 folds)"]
    assert per_fold["estimate"] == pytest.approx(0.69)
    assert per_fold["ci_low"] < 0.69 < per_fold["ci_high"]


def test_calibration_and_filters(tmp_path):
    run = load_run_data(fake_run(tmp_path / "run"))
    cal = cohort_stats.calibration(run, 12.0, n_groups=5)
    assert len(cal.table) == 5 and cal.table["n"].sum() == 200
    with pytest.raises(KeyError, match="choose one of"):
        cohort_stats.calibration(run, 13.0)
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
        clinical={"age": 140.0, "sex": "F", "stage": "V"},
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
    assert "age = 140 is far outside" in text
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
