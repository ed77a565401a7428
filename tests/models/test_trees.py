"""Tree members: exported sksurv ensembles against sksurv's own predict and apply, the torch
member against the numpy export, safetensors round trips, and input checks.

Tolerances: the export sums the same leaf values as sksurv in a different order (one sum times
the learning rate or 1 / n_trees, instead of a running sum), so scores agree to rounding
(rtol 1e-8, and atol 1e-12 for boosting scores that cancel to ~0). Leaves must agree exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
from sksurv.util import Surv

from multimodal.exceptions import ConfigError, DataError
from multimodal.models.trees import (
    TREE_DEFAULTS,
    TREE_KINDS,
    TreeEnsemble,
    TreeMember,
    fit_tree_ensemble,
)

#: Small ensembles keep the file fast; the export does not depend on the number of trees.
SMALL = {"boosting": {"n_estimators": 30}, "forest": {"n_estimators": 12}}
CASES = [
    ("boosting", SMALL["boosting"]),
    ("boosting", {"n_estimators": 20, "dropout_rate": 0.2, "max_depth": 3}),
    ("forest", SMALL["forest"]),
    ("forest", {"n_estimators": 8, "low_memory": False}),
]


def _cohort(n: int = 200, p: int = 8, seed: int = 0):
    """Random features with ties (a 3-level column, rounded columns) and tied event times."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    x[:, 1] = rng.integers(0, 3, n)
    x[:, 2] = np.round(x[:, 2], 1)
    lp = 0.8 * x[:, 0] - 0.5 * x[:, 1] + 0.4 * x[:, 2] * x[:, 3]
    t = np.round(rng.exponential(np.exp(-lp)), 1) + 0.1
    c = rng.exponential(2.0, n)
    return x, np.minimum(t, c), t <= c


def _reference(kind: str, x, time, event, seed: int = 0, options: dict | None = None):
    """The sksurv estimator that ``fit_tree_ensemble`` fits, fitted here independently."""
    cls = GradientBoostingSurvivalAnalysis if kind == "boosting" else RandomSurvivalForest
    params = {**TREE_DEFAULTS[kind], **(options or {})}
    return cls(**params, random_state=seed).fit(x, Surv.from_arrays(event=event, time=time))


def _near_thresholds(ens: TreeEnsemble, x: np.ndarray, seed: int = 1) -> np.ndarray:
    """Rows of ``x`` with one split feature set at, or one float32/float64 step around, the
    threshold of a random split (where float32 rounding decides the side)."""
    rng = np.random.default_rng(seed)
    splits = np.flatnonzero(ens.feature >= 0)
    rows = []
    for node in rng.choice(splits, size=min(60, len(splits)), replace=False):
        thr = ens.threshold[node]
        t32 = np.float32(thr)
        for v in (
            thr,
            np.nextafter(thr, np.inf),
            np.nextafter(thr, -np.inf),
            float(t32),
            float(np.nextafter(t32, np.float32(np.inf))),
            float(np.nextafter(t32, np.float32(-np.inf))),
            thr + 1e-9,
        ):
            row = x[rng.integers(len(x))].copy()
            row[ens.feature[node]] = v
            rows.append(row)
    return np.asarray(rows)


@pytest.fixture(scope="module")
def cohort():
    return _cohort()


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{sorted(c[1].items())}")
def fitted(request, cohort):
    kind, options = request.param
    x, time, event = cohort
    ens = fit_tree_ensemble(kind, x, time, event, seed=3, options=options)
    return kind, ens, _reference(kind, x, time, event, seed=3, options=options)


def _sk_leaves(est, ens: TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """(n, n_trees) sklearn's leaf of each row in each tree, as global node indices."""
    trees = (
        est.estimators_[:, 0]
        if isinstance(est, GradientBoostingSurvivalAnalysis)
        else est.estimators_
    )
    x32 = x.astype(np.float32)  # sklearn splits float32 inputs
    return np.stack([t.tree_.apply(x32) for t in trees], axis=1) + ens.roots


# -- numpy export against sksurv ------------------------------------------------------------


def test_numpy_predict_matches_sksurv(fitted, cohort):
    _, ens, est = fitted
    x = np.concatenate([cohort[0], _near_thresholds(ens, cohort[0])])
    np.testing.assert_allclose(ens.predict_numpy(x), est.predict(x), rtol=1e-8, atol=1e-12)


def test_leaves_match_sklearn_apply_near_thresholds(fitted, cohort):
    _, ens, est = fitted
    x = _near_thresholds(ens, cohort[0])
    expected = _sk_leaves(est, ens, x)
    np.testing.assert_array_equal(ens.apply(x), expected)
    member = TreeMember()
    member.set_ensemble(ens)
    np.testing.assert_array_equal(member.leaves(torch.as_tensor(x)).numpy(), expected)
    np.testing.assert_array_equal(member.leaves(torch.as_tensor(x).float()).numpy(), expected)


def test_export_shapes_and_conventions(fitted):
    kind, ens, est = fitted
    leaf = ens.left < 0
    assert ens.n_trees == len(est.estimators_)
    assert np.all(ens.feature[leaf] == -1) and np.all(ens.right[leaf] == -1)
    assert np.all(ens.value[~leaf] == 0.0)
    depths = [t.tree_.max_depth for t in np.ravel(est.estimators_)]
    assert ens.max_depth == max(depths)
    expected_scale = (
        TREE_DEFAULTS["boosting"]["learning_rate"] if kind == "boosting" else 1 / ens.n_trees
    )
    assert ens.init == 0.0 and ens.scale == pytest.approx(expected_scale)


def test_bundled_dataset_whas500():
    from sksurv.datasets import load_whas500
    from sksurv.preprocessing import OneHotEncoder

    frame, y = load_whas500()  # shipped with sksurv: no network
    x = OneHotEncoder().fit_transform(frame).to_numpy(dtype=np.float64)
    rows = np.random.default_rng(0).choice(len(x), size=300, replace=False)
    x, event, time = x[rows], y["fstat"][rows], y["lenfol"][rows]
    for kind in TREE_KINDS:
        ens = fit_tree_ensemble(kind, x, time, event, seed=0, options=SMALL[kind])
        est = _reference(kind, x, time, event, seed=0, options=SMALL[kind])
        np.testing.assert_allclose(ens.predict_numpy(x), est.predict(x), rtol=1e-8, atol=1e-12)


def test_forest_with_missing_values_follows_sklearn(cohort):
    x, time, event = cohort
    x = x.copy()
    x[::7, 0] = np.nan
    x[::11, 3] = np.nan
    ens = fit_tree_ensemble("forest", x, time, event, seed=0, options=SMALL["forest"])
    est = _reference("forest", x, time, event, seed=0, options=SMALL["forest"])
    x_new = _cohort(50, seed=5)[0]
    x_new[::3, 0] = np.nan
    x_new[1::4, 4] = np.nan  # never missing in training: sklearn sends it to the larger child
    np.testing.assert_allclose(ens.predict_numpy(x_new), est.predict(x_new), rtol=1e-8)
    member = TreeMember()
    member.set_ensemble(ens)
    np.testing.assert_allclose(
        member.raw(torch.as_tensor(x_new)).numpy(), est.predict(x_new), rtol=1e-8
    )


def test_fit_is_deterministic_for_a_seed(cohort):
    x, time, event = cohort
    for kind in TREE_KINDS:
        a = fit_tree_ensemble(kind, x, time, event, seed=7, options=SMALL[kind]).to_arrays()
        b = fit_tree_ensemble(kind, x, time, event, seed=7, options=SMALL[kind]).to_arrays()
        c = fit_tree_ensemble(kind, x, time, event, seed=8, options=SMALL[kind]).to_arrays()
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        assert any(a[k].shape != c[k].shape or not np.array_equal(a[k], c[k]) for k in a)


def test_arrays_round_trip_through_npz(fitted, cohort, tmp_path):
    _, ens, _ = fitted
    path = tmp_path / "trees.npz"
    np.savez(path, **ens.to_arrays())
    with np.load(path, allow_pickle=False) as stored:
        back = TreeEnsemble.from_arrays(dict(stored))
    np.testing.assert_array_equal(back.predict_numpy(cohort[0]), ens.predict_numpy(cohort[0]))
    assert (back.max_depth, back.n_features) == (ens.max_depth, ens.n_features)


# -- torch member ---------------------------------------------------------------------------


def test_member_forward_is_the_standardised_numpy_score(fitted, cohort):
    _, ens, _ = fitted
    x = cohort[0]
    member = TreeMember()
    member.set_ensemble(ens, center=0.3, spread=2.5)
    expected = (ens.predict_numpy(x) - 0.3) / 2.5
    out64 = member(torch.as_tensor(x))
    assert out64.dtype == torch.float64 and out64.shape == (len(x),)
    np.testing.assert_allclose(out64.numpy(), expected, rtol=1e-10, atol=1e-12)
    out32 = member(torch.as_tensor(x, dtype=torch.float32))
    assert out32.dtype == torch.float32
    # float32 inputs reach the same leaves; only the returned dtype rounds the score
    np.testing.assert_allclose(out32.numpy(), expected, rtol=1e-6, atol=1e-6)
    one = member(torch.as_tensor(x[:1]))
    assert one.shape == (1,)
    np.testing.assert_allclose(one.numpy(), expected[:1], rtol=1e-10, atol=1e-12)


def test_member_safetensors_round_trip_into_empty_member(fitted, cohort, tmp_path):
    _, ens, _ = fitted
    member = TreeMember()
    member.set_ensemble(ens, center=-1.0, spread=0.5)
    path = tmp_path / "member.safetensors"
    save_file(member.state_dict(), str(path))
    loaded = TreeMember()
    loaded.load_state_dict(load_file(str(path)))
    x = torch.as_tensor(cohort[0])
    torch.testing.assert_close(loaded(x), member(x), rtol=0, atol=0)
    assert int(loaded.depth) == ens.max_depth


def test_member_loads_inside_a_parent_module(fitted, cohort, tmp_path):
    _, ens, _ = fitted
    parent = torch.nn.ModuleDict({"a": TreeMember(), "b": TreeMember()})
    parent["a"].set_ensemble(ens, center=0.0, spread=3.0)
    path = tmp_path / "model.safetensors"
    save_file(parent.state_dict(), str(path))
    fresh = torch.nn.ModuleDict({"a": TreeMember(), "b": TreeMember()})
    fresh.load_state_dict(load_file(str(path)))
    x = torch.as_tensor(cohort[0][:10])
    torch.testing.assert_close(fresh["a"](x), parent["a"](x), rtol=0, atol=0)
    assert torch.equal(fresh["b"](x), torch.zeros(10, dtype=torch.float64))


def test_empty_member_returns_zeros():
    member = TreeMember()
    assert not member.fitted
    out = member(torch.randn(5, 3))
    assert out.dtype == torch.float32 and torch.equal(out, torch.zeros(5))
    assert member(torch.randn(1, 7, dtype=torch.float64)).shape == (1,)


def test_member_keeps_exact_leaves_after_dtype_casts(fitted, cohort):
    _, ens, est = fitted
    x = _near_thresholds(ens, cohort[0])
    member = TreeMember()
    member.set_ensemble(ens)
    expected = _sk_leaves(est, ens, x)
    for cast in (member.float, member.double):
        cast()
        np.testing.assert_array_equal(member.leaves(torch.as_tensor(x)).numpy(), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_member_on_cuda_matches_cpu(fitted, cohort):
    _, ens, est = fitted
    x = np.concatenate([cohort[0], _near_thresholds(ens, cohort[0])])
    member = TreeMember()
    member.set_ensemble(ens, center=0.1, spread=1.7)
    cpu = member(torch.as_tensor(x))
    member.cuda()
    gpu = member(torch.as_tensor(x, device="cuda"))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(
        member.leaves(torch.as_tensor(x, device="cuda")).cpu().numpy(), _sk_leaves(est, ens, x)
    )


# -- input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "error", "match"),
    [
        ("boostng", None, ConfigError, "Did you mean 'boosting'"),
        ("forest", {"n_estimator": 5}, ConfigError, "Did you mean 'n_estimators'"),
        ("forest", {"random_state": 1}, ConfigError, "seed argument"),
        ("boosting", {"loss": "ipcwls"}, ConfigError, "only 'coxph'"),
    ],
)
def test_bad_kind_and_options(cohort, kind, options, error, match):
    x, time, event = cohort
    with pytest.raises(error, match=match):
        fit_tree_ensemble(kind, x, time, event, options=options)


def test_bad_training_data(cohort):
    x, time, event = cohort
    x_nan = x.copy()
    x_nan[4, 2] = np.nan
    with pytest.raises(DataError, match=r"x\[4, 2\] is nan.*kind='forest'"):
        fit_tree_ensemble("boosting", x_nan, time, event)
    with pytest.raises(DataError, match="no patient has an event"):
        fit_tree_ensemble("forest", x, time, np.zeros_like(event))
    with pytest.raises(DataError, match=r"time\[0\] is -1.0"):
        fit_tree_ensemble("forest", x, np.r_[-1.0, time[1:]], event)
    with pytest.raises(DataError, match="one entry per row"):
        fit_tree_ensemble("forest", x, time[:-1], event)


def test_wrong_width_at_predict(fitted, cohort):
    _, ens, _ = fitted
    x = cohort[0][:, :-1]
    with pytest.raises(DataError, match="the columns it was fitted on"):
        ens.predict_numpy(x)
    member = TreeMember()
    member.set_ensemble(ens)
    with pytest.raises(DataError, match="the columns its ensemble was fitted on"):
        member(torch.as_tensor(x))


def test_from_arrays_rejects_bad_arrays(fitted):
    arrays = fitted[1].to_arrays()
    del arrays["roots"]
    with pytest.raises(DataError, match=r"lack \['roots'\]"):
        TreeEnsemble.from_arrays(arrays)
    arrays = fitted[1].to_arrays()
    arrays["left"] = arrays["left"] + len(arrays["left"])
    with pytest.raises(DataError, match="node indices outside"):
        TreeEnsemble.from_arrays(arrays)
    arrays = fitted[1].to_arrays()
    arrays["max_depth"] = arrays["max_depth"] - 1
    with pytest.raises(DataError, match="max_depth is"):
        TreeEnsemble.from_arrays(arrays)
