"""Progression endpoints end to end on a tiny synthetic cohort: config, training, run folder, reload.

The long check that the progression signal of the synthetic cohort is learned (C-index near the
ground truth's) is marked ``slow``.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

import multimodal
from multimodal import console
from multimodal.exceptions import ConfigError

TINY = {
    "data": {"folds": 2, "genomics_max_features": 20, "modalities": ["clinical", "genomics"]},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "genomics": {"name": "snn", "out_dim": 4},
    },
    "fusion": {"name": "concat", "dim": 4},
    "train": {"epochs": 2, "batch_size": 64, "patience": 5, "progress": False},
    "eval": {"n_times": 4, "bootstrap": 0, "horizons": [6.0, 24.0]},
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("prog")
    generate_cohort(out, n_patients=70, seed=5, missing_rate=0.2, with_images=False, n_genes=40)
    return out / "cohort.yaml"


@pytest.fixture(scope="module")
def cohort(manifest):
    return multimodal.Cohort.load(manifest)


@pytest.fixture(scope="module")
def runs(cohort, tmp_path_factory):
    out = {}
    for endpoint in ("multitask", "competing", "multistate"):
        folder = tmp_path_factory.mktemp(endpoint)
        out[endpoint] = multimodal.train(
            TINY, cohort=cohort, out=folder, overrides=[f"endpoint={endpoint}"]
        )
    return out


def test_config_resolves_the_head_of_each_endpoint():
    from multimodal.config import load_config

    assert load_config({"endpoint": "multitask"}).head_name == "multitask_cox"
    assert load_config({"endpoint": "competing"}).head_name == "cause_specific_cox"
    assert load_config({"endpoint": "competing", "head": {"name": "deephit"}}).head_name == (
        "deephit_competing"
    )
    assert load_config({"endpoint": "multistate"}).head_name == "illness_death_cox"
    assert load_config({"endpoint": "pfs", "head": {"name": "pmf"}}).head_name == "pmf"
    with pytest.raises(ConfigError, match="cannot use head 'pmf'"):
        load_config({"endpoint": "multistate", "head": {"name": "pmf"}})
    with pytest.raises(ConfigError, match="needs a progression endpoint"):
        load_config({"endpoint": "os", "head": {"name": "cause_specific_cox"}})
    with pytest.raises(ConfigError, match="endpoint"):
        load_config({"endpoint": "progression"})


@pytest.mark.parametrize(
    ("endpoint", "keys"),
    [
        ("multitask", ["c_index_os", "c_index_pfs", "ibs_os", "ibs_pfs"]),
        ("competing", ["c_index_progression", "c_index_death", "cr_c_index_progression",
                       "ibs_cif_progression", "ibs_cif_death", "c_index_pfs"]),
        ("multistate", ["c_index_os", "c_index_pfs", "c_index_progression", "ibs_cif_progression"]),
    ],
)  # fmt: skip
def test_metrics_hold_a_c_index_per_endpoint_and_cause(runs, endpoint, keys):
    run = runs[endpoint]
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    primary = {"multitask": "os", "competing": "progression", "multistate": "os"}[endpoint]
    assert metrics["endpoint"] == endpoint and len(metrics["folds"]) == 2
    assert metrics["c_index"] == pytest.approx(metrics[f"c_index_{primary}"])
    for key in keys:
        assert 0.0 <= metrics[key] <= 1.0, key
        assert all(key in f for f in metrics["folds"])
    assert run.history.es_c_index.notna().all()


def test_competing_predictions(runs, cohort):
    preds = runs["competing"].predictions
    assert {"event_type", "risk_progression", "risk_death", "risk_pfs"} <= set(preds.columns)
    times = runs["competing"].metrics["eval_times"]
    surv = preds[[f"surv_pfs_{t:g}" for t in times]].to_numpy()
    cif = sum(preds[[f"cif_{c}_{t:g}" for t in times]].to_numpy() for c in ("progression", "death"))
    np.testing.assert_allclose(surv + cif, 1.0, atol=1e-5)
    # primary columns: time to the first event, event = progression, surv = 1 - CIF(progression)
    prog = preds[[f"cif_progression_{t:g}" for t in times]].to_numpy()
    np.testing.assert_allclose(preds[[f"surv_{t:g}" for t in times]].to_numpy(), 1 - prog)
    assert (preds.event == (preds.event_type == 1)).all()
    first = cohort.patients.loc[preds.patient_id]
    np.testing.assert_allclose(
        preds.time, np.where(preds.event_type == 2, first.time, first.pfs_time)
    )
    p = preds[["p_progression_6", "p_progression_24"]].to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and (p[:, 1] >= p[:, 0] - 1e-6).all()


def test_multistate_state_probabilities_sum_to_one(runs):
    preds = runs["multistate"].predictions
    times = runs["multistate"].metrics["eval_times"]
    states = ("progression_free", "progressed", "dead")
    p = np.stack([preds[[f"state_{s}_{t:g}" for t in times]].to_numpy() for s in states])
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-9)
    np.testing.assert_allclose(p[0], preds[[f"surv_pfs_{t:g}" for t in times]].to_numpy())
    np.testing.assert_allclose(p[0] + p[1], preds[[f"surv_os_{t:g}" for t in times]].to_numpy())


def test_load_run_predicts_each_endpoint(runs, cohort):
    sub = cohort.subset(list(cohort.patients.index[:12]))
    mt = multimodal.load_run(runs["multitask"].run_dir)
    os_, pfs = (mt.predict_survival(sub, [6.0, 24.0], endpoint=e) for e in ("os", "pfs"))
    assert os_.shape == pfs.shape == (12, 2)
    assert (pfs.to_numpy() <= os_.to_numpy() + 0.2).all()  # a PFS event comes no later than death
    np.testing.assert_allclose(mt.predict_survival(sub, [6.0, 24.0]).to_numpy(), os_.to_numpy())
    frame = mt.predict(sub, horizons=[12.0])
    assert {"risk_os", "risk_pfs", "p_progression_12"} <= set(frame.columns)
    with pytest.raises(ValueError, match="no cumulative incidences"):
        mt.predict_cif(sub, [6.0])
    ms = multimodal.load_run(runs["multistate"].run_dir)
    cif = ms.predict_cif(sub, [6.0, 24.0], cause="progression")
    assert cif.shape == (12, 2) and (cif.to_numpy() >= 0).all()
    assert (cif[24.0] >= cif[6.0] - 1e-9).all()
    cr = multimodal.load_run(runs["competing"].run_dir)
    with pytest.raises(ValueError, match="no 'os' survival"):
        cr.predict_survival(sub, [6.0], endpoint="os")
    assert cr.predict_survival(sub, [6.0], endpoint="pfs").shape == (12, 1)


def test_evaluate_run_recomputes_the_same_metrics(runs):
    from multimodal.evaluation.report import evaluate_run

    run = runs["competing"]
    before = json.loads((run.run_dir / "metrics.json").read_text())
    after = evaluate_run(run.run_dir, n_boot=0)
    for key in ("c_index", "c_index_progression", "ibs_cif_death", "c_index_pfs"):
        assert after[key] == pytest.approx(before[key]), key


def test_deephit_competing_trains_through_the_config(cohort, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="multimodal"):
        res = multimodal.train(
            TINY, cohort=cohort, out=tmp_path, overrides=["endpoint=competing", "head.name=deephit"]
        )
    # the clinical member is asked for (the default) but the head cannot hold it: said, not silent
    said = [
        r.getMessage()
        for r in caplog.records
        if "not used: the 'deephit_competing'" in r.getMessage()
    ]
    assert len(said) == 1 and "members (clinical" in said[0] and "cause_specific_cox" in said[0]
    caplog.clear()  # without clinical covariates there is no member to drop: nothing is said
    with caplog.at_level(logging.WARNING, logger="multimodal"):
        multimodal.train(
            TINY,
            cohort=cohort,
            out=tmp_path / "genomics_only",
            overrides=["endpoint=competing", "head.name=deephit", "data.modalities=[genomics]"],
        )
    assert not [r for r in caplog.records if "not used: the 'deephit" in r.getMessage()]
    assert 0 <= res.metrics["c_index_progression"] <= 1
    assert "cif_death_6" not in res.predictions  # horizons only for p_progression
    assert res.predictions.filter(like="cif_death_").shape[1] == len(res.metrics["eval_times"])


def test_skipped_tree_members_are_said_at_training_not_on_every_load(cohort, tmp_path, caplog):
    """A competing head has two outputs: members.trees is skipped. Training says so once;
    load_run and predict, which rebuild the same fold models, do not repeat it."""
    said = "members.trees ['forest'] skipped"
    overrides = ["endpoint=competing", "members.trees=[forest]", "members.combine=stacked"]
    with caplog.at_level("WARNING"):
        multimodal.train(TINY, cohort=cohort, out=tmp_path / "run", overrides=overrides)
    assert caplog.text.count(said) == 1
    caplog.clear()
    console.reset_once()  # a new session (the CLI's `predict` is a new process)
    with caplog.at_level("WARNING"):
        model = multimodal.load_run(tmp_path / "run")
        model.predict(cohort)
    assert len(model.folds) == 2 and model.folds[0].model.trees is None
    assert said not in caplog.text


def test_cli_endpoint_override(manifest, tmp_path):
    from typer.testing import CliRunner

    from multimodal.cli import app

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINY))  # JSON is YAML
    res = CliRunner().invoke(
        app,
        ["train", "--config", str(cfg), "--cohort", str(manifest), "--out", str(tmp_path / "run"),
         "--set", "endpoint=multitask"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "c_index_pfs" in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_single_endpoints_are_unchanged(cohort, tmp_path):
    res = multimodal.train(TINY, cohort=cohort, out=tmp_path, overrides=["endpoint=pfs"])
    assert res.metrics["c_index_pfs"] == res.metrics["c_index"]
    assert not res.predictions.filter(regex="^(risk_|cif_|surv_os)").shape[1]
    pt = cohort.patients.loc[res.predictions.patient_id]
    np.testing.assert_allclose(res.predictions.time, pt.pfs_time)


@pytest.mark.slow
def test_synthetic_progression_is_learned(tmp_path):
    """Competing-risks model on clinical + genomics: its progression C-index comes near the ground
    truth's, scored the same way on the same validation patients.

    The true progression log-hazard is ``0.7 * true_risk + 0.6 * z_pfs`` and ``true_risk`` includes
    the text and imaging components, which a clinical + genomics model cannot see: the reachable
    ceiling replaces them by their expectation given clinical and genomics
    (:func:`~multimodal.data.synth.reachable_risk`).
    """
    from multimodal.data.synth import generate_cohort, reachable_risk
    from multimodal.survival.competing import cause_specific_c_index

    gen = generate_cohort(
        tmp_path / "c", n_patients=800, seed=11, missing_rate=0.0, with_images=False
    )
    cohort = multimodal.Cohort.load(gen.manifest_path)
    cfg = {
        "endpoint": "competing",
        "data": {"folds": 3, "modalities": ["clinical", "genomics"], "genomics_max_features": 200},
        "encoders": {"genomics": {"name": "snn", "out_dim": 16}},
        "fusion": {"name": "attention_gated", "dim": 16},
        "train": {"epochs": 80, "batch_size": 128, "lr": 1e-3, "patience": 15, "progress": False},
        "eval": {"bootstrap": 0},
    }
    res = multimodal.train(cfg, cohort=cohort, out=tmp_path / "run")
    gt = gen.ground_truth.set_index("patient_id")
    seen = pd.DataFrame(
        {"clinical": True, "genomics": True, "text": False, "imaging": False}, index=gt.index
    )
    own = gt.true_pfs_risk - 0.7 * gt.true_risk  # the progression-only pathway (in genomics)
    reachable = 0.7 * reachable_risk(gt, seen) + own
    val = res.predictions[res.predictions.split == "val"]
    model, ceiling, truth = [], [], []
    for _, part in val.groupby("fold"):
        ids = part.patient_id.to_numpy()

        def c(risk, part=part):
            return cause_specific_c_index(part.time, part.event_type, np.asarray(risk, float), 1)

        model.append(c(part.risk_progression))
        ceiling.append(c(reachable.loc[ids]))
        truth.append(c(gt.true_pfs_risk.loc[ids]))
    assert np.mean(model) == pytest.approx(res.metrics["c_index_progression"])
    assert np.mean(model) > 0.6
    assert np.mean(ceiling) - np.mean(model) < 0.08, (model, ceiling, truth)
    assert np.mean(truth) > np.mean(ceiling)  # the unseen modalities carry the rest
