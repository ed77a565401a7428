"""Genomics and clinical preprocessors: fitted on training rows only, JSON state round trip."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from multimodal.encoders.clinical import ClinicalPreprocessor
from multimodal.encoders.genomics import GenomicsPreprocessor
from multimodal.exceptions import ConfigError, DataError, LeakageError


@pytest.fixture
def genomics():
    rng = np.random.default_rng(0)
    cols = [f"g{i}" for i in range(6)]
    x = rng.normal(size=(10, 6)) * np.array([0.1, 5, 0.05, 3, 2, 1])
    df = pd.DataFrame(x, columns=cols, index=[f"p{i}" for i in range(10)])
    df["g5"] = 7.0  # constant -> dropped
    df.loc["p1", "g0"] = np.nan
    return df.iloc[:7], df.iloc[7:] + 100.0  # val rows shifted: must not affect the fit


def test_genomics_fit_on_train_only(genomics, caplog):
    train, val = genomics
    groups = {"a": ["g0", "g1"], "b": ["g2"], "c": ["g3", "g4", "g5"]}
    with caplog.at_level(logging.DEBUG, logger="multimodal"):
        prep = GenomicsPreprocessor(max_features=3, groups=groups).fit(train)
        loaded = GenomicsPreprocessor.from_state(json.loads(json.dumps(prep.state_dict())))
    assert prep.feature_names_ == ["g1", "g3", "g4"]  # top-3 variance, original order
    assert prep.groups_ == {"a": [0], "c": [1, 2]}  # "b" lost its only feature
    assert loaded.groups_ == prep.groups_
    # said when fitting; a loaded run (predict, report) does not say it again
    said = [r.levelno for r in caplog.records if "group 'b' has no selected" in r.getMessage()]
    assert said == [logging.WARNING, logging.DEBUG]
    z_train = prep.transform(train)
    assert z_train.dtype == np.float32 and z_train.shape == (7, 3)
    np.testing.assert_allclose(z_train.mean(0), 0, atol=1e-5)
    z_val = prep.transform(val)
    assert (z_val > 5).all()  # scaled with the training statistics, not re-centred
    spec = prep.spec()
    assert spec.in_features == 3 and spec.groups == [[0], [1, 2]]


def test_genomics_median_imputation_and_state(genomics):
    train, val = genomics
    prep = GenomicsPreprocessor(selection="mad").fit(train)
    med = train["g0"].median()
    row = pd.DataFrame([[np.nan] * 5], columns=prep.feature_names_)
    z = prep.transform(row)
    assert np.isfinite(z).all()
    assert z[0, 0] == pytest.approx((med - prep.mean_[0]) / prep.std_[0], rel=1e-5)
    state = json.loads(json.dumps(prep.state_dict()))
    again = GenomicsPreprocessor.from_state(state)
    np.testing.assert_array_equal(again.transform(val), prep.transform(val))
    # a table lacking a column: imputed as missing
    assert np.isfinite(prep.transform(val.drop(columns=["g3"]))).all()


def test_genomics_errors(genomics):
    train, _ = genomics
    with pytest.raises(LeakageError, match="survival_months"):
        GenomicsPreprocessor().fit(train.assign(survival_months=1.0))
    with pytest.raises(DataError, match="missing or constant"):
        GenomicsPreprocessor().fit(pd.DataFrame({"a": [1.0, 1.0], "b": [np.nan, np.nan]}))


@pytest.fixture
def clinical():
    train = pd.DataFrame(
        {
            "age": [50.0, 60.0, np.nan, 70.0],
            "stage": ["I", "II", None, "II"],
            "sex": ["F", "M", "F", "F"],
        },
        index=["a", "b", "c", "d"],
    )
    val = pd.DataFrame({"age": [1000.0, np.nan], "stage": ["IV", "I"], "sex": [np.nan, "M"]})
    return train, val


def test_clinical_fit_on_train_only(clinical):
    train, val = clinical
    prep = ClinicalPreprocessor(numeric=["age"], categorical=["stage", "sex"]).fit(train)
    assert prep.n_numeric == 1 and prep.cardinalities == [3, 3]
    assert prep.feature_names == ["age"]
    out = prep.transform(val)
    assert set(out) == {"numeric", "numeric_missing", "categorical"}
    assert out["numeric"].dtype == np.float32 and out["categorical"].dtype == np.int64
    mean, sd = 60.0, np.std([50.0, 60.0, 70.0])
    assert out["numeric"][0, 0] == pytest.approx((1000 - mean) / sd)
    assert out["numeric"][1, 0] == 0.0 and out["numeric_missing"][:, 0].tolist() == [0.0, 1.0]
    # unseen level "IV" and missing sex -> 0; "I" -> 1, "M" -> 2
    assert out["categorical"].tolist() == [[0, 0], [1, 2]]
    assert prep.design_names() == [
        "age", "stage=<unknown>", "stage=I", "stage=II", "sex=<unknown>", "sex=F", "sex=M",
    ]  # fmt: skip


def test_clinical_state_round_trip(clinical):
    train, val = clinical
    prep = ClinicalPreprocessor(numeric=["age"], categorical=["stage", "sex"]).fit(train)
    again = ClinicalPreprocessor.from_state(json.loads(json.dumps(prep.state_dict())))
    a, b = prep.transform(val), again.transform(val)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert again.spec() == prep.spec()


def test_clinical_errors(clinical):
    train, _ = clinical
    with pytest.raises(LeakageError, match="event"):
        ClinicalPreprocessor(numeric=["event"])
    with pytest.raises(DataError, match="grade"):
        ClinicalPreprocessor(categorical=["grade"]).fit(train)


def test_genomics_types_cap_each_data_type_apart_and_survive_the_state_round_trip():
    """data.genomics_types: ranked by variance over every column, z-scored expression values
    (variance ~1) push out every 0/1 mutation column (variance <= 0.25); per type, the cap keeps
    the most variable columns of each."""
    rng = np.random.default_rng(1)
    n = 200
    table = pd.DataFrame(
        {
            **{f"R{i}_rnaseq": rng.normal(size=n) * (1 + i / 10) for i in range(4)},
            **{f"M{i}_mut": (rng.random(n) < 0.05 + 0.1 * i).astype(float) for i in range(3)},
            "extra": rng.normal(size=n) * 0.01,
        }
    )
    pooled = GenomicsPreprocessor(max_features=2).fit(table)
    assert pooled.feature_names_ == ["R2_rnaseq", "R3_rnaseq"]
    typed = GenomicsPreprocessor(max_features=2, types=["rnaseq", "mut"]).fit(table)
    # the two most variable of each type, the unmatched column as a type of its own; table order
    assert typed.feature_names_ == ["R2_rnaseq", "R3_rnaseq", "M1_mut", "M2_mut", "extra"]
    again = GenomicsPreprocessor.from_state(json.loads(json.dumps(typed.state_dict())))
    assert again.types == ["rnaseq", "mut"]
    np.testing.assert_allclose(again.transform(table), typed.transform(table))
    # a state written before the option reads as one ranking
    old = {k: v for k, v in pooled.state_dict().items() if k != "types"}
    assert GenomicsPreprocessor.from_state(old).types == []


def test_genomics_asinh_transform_ranks_by_spread_not_by_one_extreme_patient():
    """data.genomics_transform: asinh. Expression z-scores of unlogged values are right-skewed
    (TCGA: up to thousands of SDs); by raw variance the gene with one extreme patient is kept
    over the one that varies across every patient, and standardised it leaves that patient far
    out. Through asinh, the ranking, the imputation and the z-scoring see a log scale."""
    rng = np.random.default_rng(1)
    n = 100
    spread = rng.normal(size=n) * 3.0  # varies across every patient
    spike = np.full(n, -0.2)
    spike[7] = 5000.0  # one extreme patient
    table = pd.DataFrame({"spread_rnaseq": spread, "spike_rnaseq": spike, "m_mut": 0.0})
    table.loc[table.index[:20], "m_mut"] = 1.0
    table.loc[table.index[3], "spread_rnaseq"] = np.nan

    raw = GenomicsPreprocessor(max_features=1).fit(table)
    assert raw.feature_names_ == ["spike_rnaseq"]  # variance of the extreme value wins
    prep = GenomicsPreprocessor(max_features=1, transform="asinh").fit(table)
    assert prep.feature_names_ == ["spread_rnaseq"]

    both = GenomicsPreprocessor(transform="asinh").fit(table)
    x = both.transform(table)
    assert np.isfinite(x).all()
    # the same standardisation as done by hand on the asinh values (median imputation first)
    filled = np.arcsinh(table.to_numpy(dtype=float))
    filled[3, 0] = np.nanmedian(filled[:, 0])
    expected = (filled - filled.mean(axis=0)) / filled.std(axis=0)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    assert len(np.unique(x[:, 2])) == 2  # a 0/1 column stays two-valued
    # the transform applies to new patients too, and travels with the fitted state
    again = GenomicsPreprocessor.from_state(json.loads(json.dumps(both.state_dict())))
    assert again.transform_name == "asinh"
    np.testing.assert_allclose(
        again.transform(table.iloc[:5] * 2), both.transform(table.iloc[:5] * 2)
    )
    # asinh_after_selection: ranked on the raw values (the spike is kept, its SD on the raw
    # scale is what the tree members rank by), the kept column mapped through asinh
    after = GenomicsPreprocessor(max_features=1, transform="asinh_after_selection").fit(table)
    assert after.feature_names_ == raw.feature_names_ == ["spike_rnaseq"]
    np.testing.assert_allclose(after.scales_, raw.std_)
    mapped = np.arcsinh(table[["spike_rnaseq"]].to_numpy())
    expected = (mapped - mapped.mean()) / mapped.std()
    np.testing.assert_allclose(after.transform(table), expected, rtol=1e-5, atol=1e-5)
    again = GenomicsPreprocessor.from_state(json.loads(json.dumps(after.state_dict())))
    np.testing.assert_allclose(again.scales_, after.scales_)
    np.testing.assert_allclose(again.transform(table), after.transform(table))
    # a state written before the option reads as untransformed
    old = {k: v for k, v in raw.state_dict().items() if k not in ("transform", "scales")}
    assert GenomicsPreprocessor.from_state(old).transform_name == "none"
    np.testing.assert_allclose(GenomicsPreprocessor.from_state(old).scales_, raw.std_)
    with pytest.raises(ConfigError, match="unknown genomics transform 'log'; use one of none"):
        GenomicsPreprocessor(transform="log")


def test_genomics_clip_bounds_the_z_scores_of_training_and_new_patients():
    """data.genomics_clip: z-scores beyond the bound are set to it, on every patient; the
    ranking, the training statistics and the values within the bound are unchanged."""
    rng = np.random.default_rng(2)
    n = 200
    table = pd.DataFrame(
        {
            "g_rnaseq": np.r_[rng.normal(size=n - 1), 80.0],  # one extreme patient
            "rare_mut": np.r_[np.ones(2), np.zeros(n - 2)],  # 1 % carriers: z about 10
            "h_rnaseq": rng.normal(size=n),
        }
    )
    plain = GenomicsPreprocessor().fit(table)
    clipped = GenomicsPreprocessor(clip=5).fit(table)
    assert clipped.feature_names_ == plain.feature_names_
    np.testing.assert_allclose(clipped.std_, plain.std_)
    z, c = plain.transform(table), clipped.transform(table)
    assert z[-1, 0] > 10 and z[0, 1] > 9  # what the bound is for
    np.testing.assert_allclose(c, np.clip(z, -5, 5))
    np.testing.assert_array_equal(c[:, 2], z[:, 2])  # a column within the bound is untouched
    new = pd.DataFrame({"g_rnaseq": [-1e4, 0.0], "rare_mut": [1.0, 0.0], "h_rnaseq": [0.0, 99.0]})
    assert np.abs(clipped.transform(new)).max() == pytest.approx(5.0)
    again = GenomicsPreprocessor.from_state(json.loads(json.dumps(clipped.state_dict())))
    assert again.clip == 5.0
    np.testing.assert_allclose(again.transform(new), clipped.transform(new))
    old = {k: v for k, v in plain.state_dict().items() if k != "clip"}
    assert GenomicsPreprocessor.from_state(old).clip is None
    with pytest.raises(ConfigError, match="genomics clip must be > 0 SDs"):
        GenomicsPreprocessor(clip=0)
