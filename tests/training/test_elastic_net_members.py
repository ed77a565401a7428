"""members.elastic_net -- a modality's linear member fitted along an elastic-net path by the
stacked combiner -- and members.penalty_choice: nested -- the second stage weighs out-of-fold
scores whose penalty was chosen without the patients they score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.config import MembersConfig, load_config
from multimodal.exceptions import ConfigError
from multimodal.survival.metrics import harrell_c
from multimodal.training.combine import _nested_scores, fit_linear_members, stratified_splits
from tests.training.test_combine import _Data
from tests.training.test_combine import _model as _combine_model
from tests.training.test_trainer import tiny_cohort  # noqa: F401 (fixture)

CPU = torch.device("cpu")
N_GENES, ACTING = 80, (0, 1, 2)


class _SparseData(_Data):
    """Age + sex and 80 genes, every patient with genomics; genes 0-2 act, the rest do not."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.age = rng.normal(size=n).astype(np.float32)
        self.sex = rng.integers(0, 2, n)
        self.genes = rng.normal(size=(n, N_GENES)).astype(np.float32)
        self.genomics_present = np.ones(n, dtype=bool)
        lin = 0.5 * self.age + 0.6 * self.genes[:, list(ACTING)].sum(1)
        t = rng.exponential(np.exp(-lin))
        c = rng.exponential(2.0, n)
        self.time = np.minimum(t, c).astype(np.float32)
        self.event = t <= c


def _members(**extra) -> MembersConfig:
    return MembersConfig(linear=["genomics"], combine="stacked", **extra)


def _held_out_c(model, test) -> float:
    model.eval()
    with torch.no_grad():
        return harrell_c(test.time, test.event, model(test.batch(np.arange(len(test)))).numpy())


def test_an_elastic_net_member_is_sparse_and_keeps_the_acting_genes():
    data, test = _SparseData(400, seed=1), _SparseData(800, seed=2)
    members = _members(elastic_net={"genomics": 0.5})
    model = _combine_model(N_GENES, members=members)
    fit = fit_linear_members(model, data, CPU, members)
    assert fit is not None and fit.weights["genomics"][0] > 0
    w = model.members["genomics"].weight[0].numpy()
    assert (w == 0).mean() > 0.5  # most of the 80 genes are out
    assert set(np.argsort(-np.abs(w))[:3]) == set(ACTING)
    # the penalty is a point of the path (sksurv's alpha), not one of the ridge penalties
    assert fit.penalties["genomics"] not in members.penalties
    ridge = _combine_model(N_GENES, members=_members())
    fit_linear_members(ridge, data, CPU, _members())
    assert (ridge.members["genomics"].weight[0].numpy() == 0).mean() == 0  # ridge: dense
    c_net, c_ridge = _held_out_c(model, test), _held_out_c(ridge, test)
    assert c_net > c_ridge + 0.02, (c_net, c_ridge)  # 0.759 against 0.716 when written


def test_beside_the_ridge_member_the_stacker_weighs_both_and_the_model_holds_their_sum():
    data, test = _SparseData(400, seed=1), _SparseData(800, seed=2)
    members = _members(elastic_net={"genomics": 0.5}, elastic_net_beside=True)
    model = _combine_model(N_GENES, members=members)
    fit = fit_linear_members(model, data, CPU, members)
    assert {"genomics", "genomics/net"} <= set(fit.weights) <= set(fit.penalties) | {"clinical"}
    assert fit.penalties["genomics"] in members.penalties  # the ridge member's grid
    assert fit.penalties["genomics/net"] not in members.penalties  # a point of the path
    assert fit.weights["genomics/net"][0] > 0
    assert set(model.members) == {"clinical", "genomics"}  # nothing new in the model
    w = model.members["genomics"].weight[0].numpy()
    assert set(np.argsort(-np.abs(w))[:3]) == set(ACTING)
    assert (w == 0).mean() == 0  # the weighted sum: dense where the ridge part has weight
    ridge = _combine_model(N_GENES, members=_members())
    fit_linear_members(ridge, data, CPU, _members())
    assert _held_out_c(model, test) > _held_out_c(ridge, test) + 0.02


def test_nested_scores_take_each_folds_penalty_from_the_other_folds_alone():
    """A fake second stage that prefers the penalty whose scores are largest on the rows it is
    given: penalty 1's scores are large on inner fold 0 only, penalty 2's moderately large
    everywhere else. Pooled over every fold, 1 would win on fold 0's rows; nested, fold 0's
    scores come from penalty 2 (chosen on folds 1-4), the other folds' from whichever wins on
    the rows outside them."""
    n = 50
    split = stratified_splits(np.arange(n) % 2, 5, seed=0)
    fold0 = split[0][1]
    high_on_0 = torch.zeros(n, 1)
    high_on_0[fold0] = 10.0
    steady = torch.ones(n, 1)
    path = {1.0: [(high_on_0, [])], 2.0: [(steady, [])]}

    def second_stage(scores, penalty=0.0, rows=None):
        (s,) = scores.values()
        return None, None, -float(s[rows].mean())

    out = _nested_scores(path, [1.0, 2.0], split, 0, "genomics", second_stage)
    # fold 0: chosen on folds 1-4, where penalty 1 scores 0 -> penalty 2 (score 1)
    assert torch.equal(out[fold0], steady[fold0])
    # folds 1-4: the rows outside them hold fold 0 (mean 10 * 10/40 = 2.5 > 1) -> penalty 1
    for _, held in split[1:]:
        assert torch.equal(out[held], high_on_0[held])


def test_nested_choice_changes_only_the_second_stage_inputs(monkeypatch):
    """The nested choice keeps the pooled penalty and the direction fitted on every training
    patient; only the member's weight, fitted on other out-of-fold scores, may differ. It runs
    once per repeat and member (and not at all when pooled)."""
    import multimodal.training.combine as combine

    calls = []
    real = combine._nested_scores
    monkeypatch.setattr(
        combine, "_nested_scores", lambda *a, **k: calls.append(a[4]) or real(*a, **k)
    )
    data = _SparseData(300, seed=3)
    fits, models = {}, {}
    for choice in ("pooled", "nested"):
        assert calls == []  # the pooled fit (first) never calls it
        members = _members(penalty_choice=choice, stack_repeats=2)
        models[choice] = _combine_model(N_GENES, members=members)
        fits[choice] = fit_linear_members(models[choice], data, CPU, members)
    assert fits["pooled"].penalties == fits["nested"].penalties
    a = (
        models["pooled"].members["genomics"].weight[0].numpy()
        / fits["pooled"].weights["genomics"][0]
    )
    b = (
        models["nested"].members["genomics"].weight[0].numpy()
        / fits["nested"].weights["genomics"][0]
    )
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # same direction
    assert fits["nested"].weights["genomics"][0] > 0
    assert calls == ["genomics", "genomics"]  # two repeats, one member


def test_heads_it_cannot_serve_are_refused_and_an_absent_modality_is_named(caplog):
    members = _members(elastic_net={"genomics": 0.5})
    with pytest.raises(ConfigError, match="no partial likelihood"):
        _combine_model(N_GENES, members=members, head="logistic_hazard", cuts=[0.0, 1.0, 2.0])
    absent = MembersConfig(linear=["genomics", "report"], combine="stacked")
    absent = absent.model_copy(update={"elastic_net": {"report": 0.5}})
    model = _combine_model(N_GENES, members=absent)  # no report in this model
    with caplog.at_level("WARNING", logger="multimodal.training.combine"):
        fit = fit_linear_members(model, _SparseData(200, seed=6), CPU, absent)
    assert fit is not None and "elastic_net names ['report']" in caplog.text
    assert "no linear member" in caplog.text


def test_the_elastic_net_fit_is_deterministic():
    data = _SparseData(250, seed=4)
    members = _members(elastic_net={"genomics": 0.5}, penalty_choice="nested")
    a, b = (_combine_model(N_GENES, members=members) for _ in range(2))
    fit_linear_members(a, data, CPU, members)
    fit_linear_members(b, data, CPU, members)
    for (_, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q)


def test_configs_it_cannot_serve_are_refused():
    base = {"linear": ["genomics"], "combine": "stacked"}
    with pytest.raises(ConfigError, match=r"elastic_net names \['report'\]"):
        load_config({"members": {**base, "elastic_net": {"report": 0.5}}})
    with pytest.raises(ConfigError, match=r"outside \(0, 1\]"):
        load_config({"members": {**base, "elastic_net": {"genomics": 0.0}}})
    with pytest.raises(ConfigError, match=r"needs members\.combine: stacked"):
        load_config({"members": {**base, "combine": "joint", "elastic_net": {"genomics": 0.5}}})
    with pytest.raises(ConfigError, match="names no modality"):
        load_config({"members": {**base, "elastic_net_beside": True}})
    with pytest.raises(ConfigError, match="penalty_choice"):
        load_config({"members": {**base, "penalty_choice": "best"}})
    members = _members(elastic_net={"genomics": 0.5})
    model = _combine_model(N_GENES, members=members)
    model.head.n_offsets = 2  # as a head with two Cox risks (multitask_cox) has
    with pytest.raises(ConfigError, match=r"for one Cox risk.*2 outputs"):
        fit_linear_members(model, _SparseData(100, seed=5), CPU, members)


@pytest.mark.parametrize("beside", [False, True])
def test_elastic_net_members_train_save_report_and_reload_to_the_same_predictions(
    tiny_cohort,  # noqa: F811
    tmp_path,
    beside,
):
    """Through the user's path: multimodal.train with the elastic-net genomics member (alone or
    beside the ridge one) and the nested choice, its penalty and weights in model.json, the
    report's methods naming it, the reloaded run predicting what training wrote."""
    import json

    import multimodal
    from multimodal.reporting import build_report
    from tests.models.test_interactions import CFG, assert_reloaded_risks_match

    members = {**CFG["members"], "elastic_net": {"genomics": 0.5}, "penalty_choice": "nested"}
    members["elastic_net_beside"] = beside
    res = multimodal.train({**CFG, "members": members}, cohort=tiny_cohort, out=tmp_path / "run")
    fit = json.loads((res.run_dir / "model" / "fold_0" / "model.json").read_text())["linear_fit"]
    names = {"genomics", "genomics/net"} if beside else {"genomics"}
    assert names <= set(fit["weights"]) and names <= set(fit["penalties"])
    model = multimodal.load_run(res.run_dir)
    assert set(model.folds[0].model.members) == {"clinical", "genomics"}
    assert_reloaded_risks_match(res.run_dir, model, tiny_cohort)
    html = build_report(res.run_dir, out=tmp_path / "r.html", n_boot=0).read_text()
    assert "elastic-net penalty" in html and "nested" in html
