"""Baselines on synthetic data, input checks, the Cohort adapter and one real BLCA fold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from multimodal.evaluation.baselines import BaselineOptions, run_baselines, run_baselines_on_cohort
from multimodal.evaluation.compare import format_mean_std, summarize_folds
from multimodal.exceptions import LeakageError

FAST = BaselineOptions(rsf_n_estimators=20, coxnet_n_alphas=8, coxnet_genomic_features=30, n_jobs=1)


def synthetic_cohort(n=160, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    clin = pd.DataFrame(
        {
            "age": rng.normal(60, 10, n),
            "sex": rng.choice(["F", "M"], n),
            "stage": pd.array(rng.choice(["I", "II", "III", None], n), dtype="string"),
        },
        index=pd.Index(ids, name="patient_id"),
    )
    gen = pd.DataFrame(
        rng.normal(size=(n, 40)), index=clin.index, columns=[f"G{j}_rnaseq" for j in range(40)]
    )
    lin = (
        0.04 * (clin.age - 60)
        + 0.8 * gen["G0_rnaseq"]
        + (clin.stage == "III").fillna(False).astype(float)
    )
    t = rng.exponential(np.exp(-lin.to_numpy()) * 20)
    c = rng.exponential(30, n)
    time, event = np.minimum(t, c), t <= c
    order = rng.permutation(n)
    folds = [(np.setdiff1d(order, part), part) for part in np.array_split(order, 3)]
    return clin, gen, time, event, folds


def test_run_baselines_columns_and_sanity():
    clin, gen, time, event, folds = synthetic_cohort()
    res, preds = run_baselines(clin, gen, time, event, folds, options=FAST, return_predictions=True)
    assert {"model", "fold", "c_index", "uno_c", "ibs"} <= set(res.columns)
    assert set(res.model) == {"clinical_cox", "coxnet", "rsf"} and len(res) == 9
    assert res.c_index.between(0.55, 1).all()
    assert res.ibs.between(0, 0.3).all()
    assert len(preds) == 3 * len(time)
    summary = summarize_folds(res)
    assert summary.loc["coxnet", "n_folds"] == 3
    assert format_mean_std(0.6241, 0.0339) == "0.624 ± 0.034"


def test_ids_and_positions_give_same_result():
    clin, _gen, time, event, folds = synthetic_cohort(seed=1)
    by_pos = run_baselines(
        clin, None, time, event, folds[:1], models=("clinical_cox",), options=FAST
    )
    id_folds = [(clin.index[tr].tolist(), clin.index[va].tolist()) for tr, va in folds[:1]]
    by_id = run_baselines(clin, None, time, event, id_folds, models=("clinical_cox",), options=FAST)
    assert by_pos.c_index.iloc[0] == pytest.approx(by_id.c_index.iloc[0])


def test_input_checks():
    clin, gen, time, event, folds = synthetic_cohort(seed=2)
    with pytest.raises(LeakageError, match="outcome"):
        run_baselines(clin.assign(survival_months=time), gen, time, event, folds, options=FAST)
    with pytest.raises(LeakageError, match="share"):
        run_baselines(
            clin, gen, time, event, [(folds[0][0], folds[0][0][:5])], models=("clinical_cox",)
        )
    with pytest.raises(ValueError, match="coxnet needs"):
        run_baselines(clin, None, time, event, folds, models=("coxnet",))
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baselines(clin, gen, time, event, folds, models=("cox",))


def test_cohort_adapter_with_fold_objects():
    clin, gen, time, event, folds = synthetic_cohort(seed=3)
    patients = pd.DataFrame({"time": time, "event": event}, index=clin.index)
    cohort = SimpleNamespace(
        patients=patients,
        sources={
            "clinical": SimpleNamespace(table=clin, numeric=["age"], categorical=["sex", "stage"]),
            "genomics": SimpleNamespace(table=gen.iloc[10:]),  # 10 patients lack genomics
        },
    )
    fold_objs = [
        SimpleNamespace(index=k, train_ids=clin.index[tr].tolist(), val_ids=clin.index[va].tolist())
        for k, (tr, va) in enumerate(folds[:2])
    ]
    res = run_baselines_on_cohort(
        cohort, fold_objs, models=("clinical_cox", "coxnet"), options=FAST
    )
    assert res.fold.tolist() == [0, 0, 1, 1] and res.c_index.notna().all()


def test_blca_one_fold(shared_data):
    folder = shared_data / "tcga" / "blca"
    clin = pd.read_csv(folder / "clinical.csv", dtype={"stage": "string"}).set_index("patient_id")
    gen = pd.read_csv(folder / "genomics.csv.gz").set_index("patient_id").reindex(clin.index)
    split = pd.read_csv(folder / "splits" / "porpoise_mcat_5fold" / "fold_0.csv")
    fold = (
        split.patient_id[split.split == "train"].tolist(),
        split.patient_id[split.split == "val"].tolist(),
    )
    res = run_baselines(
        clin[["age", "sex", "stage"]],
        gen,
        clin.survival_months.to_numpy(),
        clin.event.to_numpy() == 1,
        [fold],
        numeric=["age"],
        categorical=["sex", "stage"],
        options=BaselineOptions(rsf_n_estimators=50, coxnet_n_alphas=10, n_jobs=1),
    )
    assert len(res) == 3 and res.c_index.between(0.55, 0.8).all()
    assert res.n_val.iloc[0] == len(fold[1])
