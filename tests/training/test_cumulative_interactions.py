"""members.interaction_form: cumulative -- every gene times [stage >= II], [>= III], [>= IV],
fitted by the stacked combiner along an elastic-net path: a few genes that act only from some
stage on are found among many that do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.config import MembersConfig, load_config
from multimodal.exceptions import ConfigError
from multimodal.models.members import LinearMember
from multimodal.models.model import MultimodalSurvivalModel
from multimodal.survival.metrics import harrell_c
from multimodal.training.combine import fit_linear_members
from multimodal.types import InputSpec
from tests.training.test_combine import _Data
from tests.training.test_combine import _model as _combine_model

CPU = torch.device("cpu")
N_GENES, ACTING = 60, (0, 1, 2)


class _StagedData(_Data):
    """Age + stage (levels 1..4 = I..IV, 0 = unknown; in the clinical input's one categorical
    column) and 60 genes, every patient with genomics; genes 0-2 act only in stage III/IV, gene 5
    in every stage."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.age = rng.normal(size=n).astype(np.float32)
        self.sex = stage = rng.integers(1, 5, n)  # _Data.batch reads the categorical as `sex`
        stage[rng.random(n) < 0.05] = 0
        self.genes = rng.normal(size=(n, N_GENES)).astype(np.float32)
        self.genomics_present = np.ones(n, dtype=bool)
        lin = 0.5 * self.age + 0.4 * (stage >= 3) + 0.4 * self.genes[:, 5]
        lin = lin + (stage >= 3) * self.genes[:, list(ACTING)].sum(1) * 0.7
        t = rng.exponential(np.exp(-lin))
        c = rng.exponential(2.0, n)
        self.time = np.minimum(t, c).astype(np.float32)
        self.event = t <= c


def _members(form: str = "cumulative", **extra) -> MembersConfig:
    return MembersConfig(
        linear=["genomics"],
        combine="stacked",
        interactions={"genomics": "stage"},
        interaction_form=form,
        **extra,
    )


def _model(members: MembersConfig, head: str = "cox", cuts=None) -> MultimodalSurvivalModel:
    """test_combine's clinical + genomics model, the clinical factor being stage (I-IV)."""
    stage = InputSpec(kind="clinical", n_numeric=1, cardinalities=[5], categorical_names=["stage"])
    return _combine_model(N_GENES, members=members, clinical=stage, head=head, cuts=cuts)


def test_design_is_features_then_features_times_each_cumulative_level():
    lm = LinearMember(
        "genomics",
        InputSpec(kind="genomics", in_features=3),
        modifier=(0, 5),
        modifier_name="stage",
        form="cumulative",
    )
    assert lm.blocks == ["genomics", "genomics*stage"] and lm.sparse_blocks == ["genomics*stage"]
    x = torch.tensor([[1.0, 2.0, 3.0]] * 5)
    stage = torch.tensor([[0], [1], [2], [3], [4]])  # unknown, I, II, III, IV
    present = torch.tensor([True, True, True, True, False])
    d = lm.design(x, {"categorical": stage}, present)
    assert d.shape == (5, 3 + 3 * 3)
    torch.testing.assert_close(d[:, :3], x)
    above = d[:, 3:].reshape(5, 3, 3)[:, :, 0]  # gene 0 times [>= II], [>= III], [>= IV]
    assert above.tolist() == [
        [0.0, 0.0, 0.0],  # unknown stage: no products
        [0.0, 0.0, 0.0],  # stage I
        [1.0, 0.0, 0.0],  # stage II
        [1.0, 1.0, 0.0],  # stage III
        [0.0, 0.0, 0.0],  # stage IV, clinical covariates missing: no products
    ]
    assert not hasattr(lm, "loadings")  # no principal components in this form


def test_the_elastic_net_path_finds_the_genes_acting_from_stage_three_on():
    data, test = _StagedData(700, seed=1), _StagedData(700, seed=2)
    model = _model(_members())
    fit = fit_linear_members(model, data, CPU, _members())
    assert fit is not None and np.isfinite(fit.loss)
    assert fit.weights["genomics*stage"][0] > 0
    products = model.members["genomics"].weight[0, N_GENES:].reshape(3, N_GENES).numpy()
    # sparse: most products are exactly zero; the largest sit at the acting genes x [>= III]
    assert (products == 0).mean() > 0.8
    assert set(np.argsort(-np.abs(products[1]))[:3]) == set(ACTING)
    assert np.abs(products[1, list(ACTING)]).min() > np.abs(np.delete(products, ACTING, 1)).max()
    # held-out patients: better than the principal-component products and than no products
    batch = test.batch(np.arange(len(test)))
    c = {}
    for name, members in [
        ("cumulative", _members()),
        ("components", _members("components")),
        ("none", MembersConfig(linear=["genomics"], combine="stacked")),
    ]:
        m = model if name == "cumulative" else _model(members)
        if name != "cumulative":
            fit_linear_members(m, data, CPU, members)
        m.eval()
        with torch.no_grad():
            c[name] = harrell_c(test.time, test.event, m(batch).numpy())
    assert c["cumulative"] > c["components"] + 0.01 and c["cumulative"] > c["none"] + 0.01, c


def test_both_forms_side_by_side_are_the_two_designs_concatenated():
    """interaction_form: both -- the components' block (ridge) then the cumulative products'
    (elastic net), each exactly as the form that has it alone builds it."""
    spec = InputSpec(kind="genomics", in_features=3)
    kw = dict(modifier=(0, 5), modifier_name="stage", components=2)
    both = LinearMember("genomics", spec, form="both", **kw)
    pcs = LinearMember("genomics", spec, form="components", **kw)
    cum = LinearMember("genomics", spec, form="cumulative", **kw)
    assert both.blocks == ["genomics", "genomics*stage", "genomics*stage>=k"]
    assert both.sparse_blocks == ["genomics*stage>=k"] and pcs.sparse_blocks == []
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=rng)
    clinical = {"categorical": torch.randint(0, 5, (40, 1), generator=rng)}
    present = torch.rand(40, generator=rng) > 0.1
    for lm in (both, pcs):
        lm.fit_components(x, torch.ones(40, dtype=torch.bool))
    torch.testing.assert_close(both.loadings, pcs.loadings)
    blocks = both.design_blocks(x, clinical, present)
    torch.testing.assert_close(blocks["genomics"], x)
    torch.testing.assert_close(
        blocks["genomics*stage"], pcs.design_blocks(x, clinical, present)["genomics*stage"]
    )
    torch.testing.assert_close(
        blocks["genomics*stage>=k"], cum.design_blocks(x, clinical, present)["genomics*stage"]
    )
    assert both.linear.weight.shape[1] == 3 + 2 * 5 + 3 * 3


@pytest.mark.parametrize("form", ["cumulative", "both"])
def test_a_member_with_products_reloads_from_its_state_to_the_same_output(form):
    """What a run folder keeps of a member is its state dict: a member rebuilt from the same
    arguments and loaded strictly gives the same output, products included."""
    spec = InputSpec(kind="genomics", in_features=4)
    kw = dict(modifier=(0, 5), modifier_name="stage", components=2, form=form)
    a, b = LinearMember("genomics", spec, **kw), LinearMember("genomics", spec, **kw)
    rng = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=rng)
    clinical = {"categorical": torch.randint(0, 5, (30, 1), generator=rng)}
    a.fit_components(x, torch.ones(30, dtype=torch.bool))
    with torch.no_grad():
        a.linear.weight.copy_(torch.randn(a.linear.weight.shape, generator=rng))
    b.load_state_dict(a.state_dict(), strict=True)
    present = torch.ones(30, dtype=torch.bool)
    products = a.design(x, clinical, present)[:, 4:]
    assert products.abs().sum() > 0
    torch.testing.assert_close(b(x, present, clinical, present), a(x, present, clinical, present))


def test_both_forms_fit_each_block_and_keep_the_acting_genes():
    data, test = _StagedData(700, seed=1), _StagedData(700, seed=2)
    model = _model(_members("both"))
    fit = fit_linear_members(model, data, CPU, _members("both"))
    assert {"genomics", "genomics*stage", "genomics*stage>=k"} <= set(fit.weights)
    assert fit.penalties["genomics*stage>=k"] > 0 and fit.weights["genomics*stage>=k"][0] > 0
    lm = model.members["genomics"]
    products = lm.weight[0, lm.columns["genomics*stage>=k"]].reshape(3, N_GENES).numpy()
    assert set(np.argsort(-np.abs(products[1]))[:3]) == set(ACTING)
    components = _model(_members("components"))
    fit_linear_members(components, data, CPU, _members("components"))
    batch = test.batch(np.arange(len(test)))
    c = {}
    for name, m in [("both", model), ("components", components)]:
        m.eval()
        with torch.no_grad():
            c[name] = harrell_c(test.time, test.event, m(batch).numpy())
    assert c["both"] > c["components"] + 0.01, c


def test_both_forms_keep_the_components_where_a_column_has_too_few_levels_for_thresholds():
    """One known level in the training patients (with "unknown": 2) gives no cumulative
    threshold, so ``both`` keeps the component products alone (``cumulative`` gives no products
    at all)."""
    one = InputSpec(kind="clinical", n_numeric=1, cardinalities=[2], categorical_names=["stage"])
    assert MultimodalSurvivalModel._modifier("genomics", _members("both"), one) == (0, 2)
    assert MultimodalSurvivalModel._modifier("genomics", _members(), one) is None
    lm = LinearMember(
        "genomics",
        InputSpec(kind="genomics", in_features=4),
        modifier=(0, 2),
        modifier_name="stage",
        components=2,
        form="both",
    )
    assert lm.blocks == ["genomics", "genomics*stage"] and lm.sparse_blocks == []


def test_the_fit_is_deterministic():
    data = _StagedData(300, seed=4)
    a, b = _model(_members()), _model(_members())
    fit_linear_members(a, data, CPU, _members())
    fit_linear_members(b, data, CPU, _members())
    for (_, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("form", ["cumulative", "both"])
def test_heads_and_combiners_it_cannot_serve_are_refused(form):
    members = {"linear": ["genomics"], "interactions": {"genomics": "stage"}}
    members["interaction_form"] = form
    with pytest.raises(ConfigError, match=rf"{form} needs members\.combine: stacked"):
        load_config({"members": {**members, "combine": "joint"}})
    with pytest.raises(ConfigError, match=rf"{form} needs members\.clinical_penalty"):
        load_config({"members": {**members, "combine": "stacked", "clinical_penalty": None}})
    with pytest.raises(ConfigError, match="no partial likelihood"):
        _model(_members(form), head="logistic_hazard", cuts=[0.0, 1.0, 2.0])
    with pytest.raises(ConfigError, match="interaction_form"):
        load_config({"members": {"interaction_form": "ordinal"}})


def test_a_path_that_diverges_leaves_the_products_out_with_a_warning(monkeypatch, caplog):
    """sksurv's Coxnet raises ArithmeticError when a penalty is too small for the patients: the
    path is retried at larger fractions of the largest penalty, and if every one fails the block
    is left out (weight 0, zero coefficients) instead of failing the training run."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    calls = []

    def diverge(self, X, y):
        calls.append(self.alpha_min_ratio)
        raise ArithmeticError("Numerical error, because weights are too large.")

    monkeypatch.setattr(CoxnetSurvivalAnalysis, "fit", diverge)
    data = _StagedData(200, seed=5)
    model = _model(_members())
    fit = fit_linear_members(model, data, CPU, _members())
    assert fit is not None and np.isfinite(fit.loss)
    assert calls == [0.02, 0.05, 0.1, 0.2, 0.5]
    assert fit.weights["genomics*stage"] == [0.0]
    assert "genomics*stage" not in fit.penalties  # no penalty was used: none is recorded
    assert float(model.members["genomics"].weight[0, N_GENES:].abs().sum()) == 0.0
    assert fit.weights["genomics"][0] > 0  # the ridge member is unaffected
    assert "genomics*stage left out: its elastic-net path diverged" in caplog.text
    # with both forms, the component products are fitted as ever beside the diverged block
    model = _model(_members("both"))
    fit = fit_linear_members(model, data, CPU, _members("both"))
    lm = model.members["genomics"]
    assert fit.weights["genomics*stage>=k"] == [0.0] and "genomics*stage>=k" not in fit.penalties
    assert float(lm.weight[0, lm.columns["genomics*stage>=k"]].abs().sum()) == 0.0
    assert fit.penalties["genomics*stage"] > 0
    assert float(lm.weight[0, lm.columns["genomics*stage"]].abs().sum()) > 0


def test_products_that_are_zero_for_every_patient_are_left_out(caplog):
    """Every training patient in the first level (or unknown): the products are all zero, and
    the block is left out before any fit (weight 0), not fitted along a degenerate path."""
    import logging

    caplog.set_level(logging.INFO, logger="multimodal.training.combine")
    data = _StagedData(200, seed=6)
    data.sex[:] = 1  # stage I for everyone
    model = _model(_members())
    fit = fit_linear_members(model, data, CPU, _members())
    assert fit is not None and fit.weights["genomics*stage"] == [0.0]
    assert "genomics*stage left out: it is zero for every training patient" in caplog.text


@pytest.mark.parametrize(
    ("levels", "bad"),
    [
        (["I", "II", "III", "IV"], None),
        (["IA", "IB", "II", "IIA", "IIIC", "IV"], None),
        (["Stage I", "Stage II", "Stage III"], None),
        (["G1", "G2", "G3"], None),
        (["stage_i", "stage_ii", "Stage-III"], None),
        (["pT1", "pT2a", "ypT3"], None),
        (["N0", "N1", "N1mi", "N2"], None),
        (["G1", "G2", "G3", "GX"], "['GX'] with no rank"),
        (["T1", "T2", "Tis"], "['Tis'] with no rank"),
        (["high", "low", "medium"], "with no rank"),
        (["1", "10", "9"], "not in rank order"),
    ],
)
def test_level_order_problem_names_levels_that_break_the_thresholds(levels, bad):
    from multimodal.models.members import level_order_problem

    problem = level_order_problem("grade", levels)
    assert problem is None if bad is None else bad in problem


def test_training_warns_where_the_thresholds_would_follow_no_clinical_order(tmp_path, caplog):
    """A user who pairs genomics with a column holding G1-G3 and GX is told, by column and
    level, that ``>= GX`` compares unlike things, and how to fix the table."""
    import logging

    import pandas as pd

    import multimodal
    from multimodal.data.synth import generate_cohort
    from tests.models.test_interactions import CFG

    generate_cohort(tmp_path, n_patients=60, seed=3, missing_rate=0.2, image_size=12)
    table = next(p for p in tmp_path.rglob("*.csv") if "stage" in pd.read_csv(p, nrows=1).columns)
    frame = pd.read_csv(table)
    frame["stage"] = np.array(["G1", "G2", "G3", "GX"])[np.arange(len(frame)) % 4]
    frame.to_csv(table, index=False)
    caplog.set_level(logging.WARNING)
    cfg = {**CFG, "members": {**CFG["members"], "interaction_form": "cumulative"}}
    multimodal.train(
        cfg, cohort=multimodal.Cohort.load(tmp_path / "cohort.yaml"), out=tmp_path / "run"
    )
    assert caplog.text.count("'stage' has level(s) ['GX'] with no rank") == 1  # once, not per fold
    assert "recode the column in the clinical table" in caplog.text
