"""The combiner: the linear members (clinical + ridge-penalised genomics / text Cox terms) are
fitted before the deep residual trains."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from multimodal.config import EncoderConfig, FusionConfig, HeadConfig, MembersConfig
from multimodal.models.model import MultimodalSurvivalModel
from multimodal.survival.metrics import harrell_c
from multimodal.training.combine import (
    COMBINERS,
    LinearFit,
    choose_penalty,
    fit_linear_members,
    members_summary,
)
from multimodal.types import Batch, InputSpec

CPU = torch.device("cpu")


class _Data:
    """Minimal FoldData stand-in: one clinical numeric + one 2-level factor, 40 genes."""

    def __init__(self, n: int, seed: int, n_genes: int = 40, informative: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.age = rng.normal(size=n).astype(np.float32)
        self.sex = rng.integers(1, 3, n)  # level 0 = missing
        self.genes = rng.normal(size=(n, n_genes)).astype(np.float32)
        self.genomics_present = rng.random(n) > 0.2
        lin = 0.8 * self.age + 0.5 * (self.sex == 2)
        lin = lin + np.where(self.genomics_present, self.genes[:, :informative].sum(1) * 0.6, 0.0)
        t = rng.exponential(np.exp(-lin))
        c = rng.exponential(2.0, n)
        self.time = np.minimum(t, c).astype(np.float32)
        self.event = t <= c
        self.true_lin = lin

    def __len__(self) -> int:
        return len(self.time)

    def batch(self, idx) -> Batch:
        i = np.asarray(idx)
        return Batch(
            patient_id=[str(k) for k in i],
            time=torch.from_numpy(self.time[i]),
            event=torch.from_numpy(self.event[i]),
            inputs={
                "clinical": {
                    "numeric": torch.from_numpy(self.age[i, None]),
                    "numeric_missing": torch.zeros(len(i), 1),
                    "categorical": torch.from_numpy(self.sex[i, None]),
                },
                "genomics": torch.from_numpy(self.genes[i]),
            },
            mask={
                "clinical": torch.ones(len(i), dtype=torch.bool),
                "genomics": torch.from_numpy(self.genomics_present[i]),
            },
        )


def _model(
    n_genes: int = 40,
    linear=("genomics",),
    members: MembersConfig | None = None,
    clinical: InputSpec | None = None,
    head: str = "cox",
    cuts=None,
) -> MultimodalSurvivalModel:
    """Clinical (default: one numeric, one 2-level factor) + genomics, a concat fusion."""
    torch.manual_seed(0)
    specs = {
        "clinical": clinical or InputSpec(kind="clinical", n_numeric=1, cardinalities=[3]),
        "genomics": InputSpec(kind="genomics", in_features=n_genes),
    }
    encoders = {
        "clinical": EncoderConfig(name="clinical_mlp", out_dim=4),
        "genomics": EncoderConfig(name="snn", out_dim=4),
    }
    return MultimodalSurvivalModel(
        specs,
        encoders,
        FusionConfig(name="concat", dim=4),
        HeadConfig(name=head),
        members=members or MembersConfig(linear=list(linear)),
        cuts=cuts,
        clinical_modality="clinical",
    )


def _linear_parts(model: MultimodalSurvivalModel, batch: Batch) -> dict[str, np.ndarray]:
    """Each member's share of the risk, computed by hand from its design and coefficients."""
    designs = model.linear_designs(batch.inputs, batch.mask)
    return {
        m: ((x @ model.members[m].weight.T).squeeze(-1) * present).numpy()
        for m, (x, present) in designs.items()
    }


def _zero_members(model: MultimodalSurvivalModel) -> bool:
    return all(float(lm.weight.detach().abs().max()) == 0.0 for lm in model.members.values())


def test_fit_makes_the_model_a_penalised_linear_cox_at_step_zero():
    data = _Data(400, seed=0)
    model = _model()
    assert list(model.members) == ["clinical", "genomics"]  # the clinical member first
    fit = fit_linear_members(
        model, data, CPU, MembersConfig(linear=["genomics"], penalties=[0.01, 1.0, 1e4])
    )
    assert isinstance(fit, LinearFit) and np.isfinite(fit.loss)
    assert fit.combine == "joint"
    model.eval()
    batch = data.batch(np.arange(len(data)))
    with torch.no_grad():
        risk = model(batch).numpy()
        linear_only = sum(_linear_parts(model, batch).values())
    np.testing.assert_allclose(risk, linear_only, atol=1e-5)  # deep residual starts at zero
    # the informative genes get the largest genomic coefficients, and they are frozen
    w = model.members["genomics"].weight.detach().numpy().ravel()
    assert set(np.argsort(-np.abs(w))[:3]) == {0, 1, 2}
    assert not model.members["genomics"].weight.requires_grad
    assert model.members["clinical"].weight.requires_grad
    # the fit is a real Cox model: concordant with the true linear predictor on new patients
    test = _Data(400, seed=1)
    with torch.no_grad():
        r = model(test.batch(np.arange(len(test)))).numpy()
    assert harrell_c(test.time, test.event, r) > 0.7
    assert np.corrcoef(r, test.true_lin)[0, 1] > 0.85


def test_uninformative_genomics_get_the_largest_penalty():
    data = _Data(300, seed=2, informative=0)
    model = _model()
    fit = fit_linear_members(
        model, data, CPU, MembersConfig(linear=["genomics"], penalties=[0.01, 0.1, 1e3])
    )
    w = model.members["genomics"].weight.detach().abs().max().item()
    assert w < 0.01  # noise genes shrunk to ~0: the chosen penalty was 1e3
    assert fit is not None and fit.penalties["genomics"] == 1e3


@pytest.mark.parametrize("combine", ["joint", "stacked"])
def test_without_linear_modalities_only_the_clinical_member_is_fitted(combine):
    data = _Data(200, seed=3)
    model = _model(linear=())
    assert list(model.members) == ["clinical"]
    fit = fit_linear_members(model, data, CPU, MembersConfig(combine=combine))
    assert fit is not None
    assert fit.combine == "joint"  # a lone clinical member has nothing to stack
    assert fit.penalties == {"clinical": 0.01} and fit.weights == {}
    w = model.members["clinical"].weight.detach().numpy().ravel()
    assert w[0] > 0.4  # age effect 0.8, shrunk a little by the ridge


def test_choose_penalty_prefers_larger_penalty_on_ties_and_best_score_otherwise():
    event = np.array([1, 0] * 30)
    flat = choose_penalty(lambda a, b, lam: 0.6, event, (1.0, 10.0, 100.0))
    assert flat == 100.0
    peaked = choose_penalty(lambda a, b, lam: -abs(np.log10(lam) - 1), event, (1.0, 10.0, 100.0))
    assert peaked == 10.0


def test_heads_without_an_offset_get_no_members_and_are_left_alone():
    specs = {"clinical": InputSpec(kind="clinical", n_numeric=1, cardinalities=[3])}
    model = MultimodalSurvivalModel(
        specs,
        {"clinical": EncoderConfig(name="clinical_mlp", out_dim=4)},
        FusionConfig(name="concat", dim=4),
        HeadConfig(name="pmf"),
        cuts=[0.0, 0.5, 1.0, 2.0],
        clinical_modality="clinical",
    )
    assert len(model.members) == 0
    assert fit_linear_members(model, _Data(50, seed=4), CPU, MembersConfig()) is None


def test_a_discrete_time_head_has_members_but_no_partial_likelihood_to_fit_them():
    """Logistic hazard takes a per-patient offset, but its members train with the residual."""
    specs = {"clinical": InputSpec(kind="clinical", n_numeric=1, cardinalities=[3])}
    model = MultimodalSurvivalModel(
        specs,
        {"clinical": EncoderConfig(name="clinical_mlp", out_dim=4)},
        FusionConfig(name="concat", dim=4),
        HeadConfig(name="logistic_hazard"),
        cuts=[0.0, 0.5, 1.0, 2.0],
        clinical_modality="clinical",
    )
    assert model.head.supports_offset and not model.head.partial_likelihood
    assert list(model.members) == ["clinical"]
    head_before = model.head.linear.weight.detach().clone()
    assert fit_linear_members(model, _Data(100, seed=4), CPU, MembersConfig()) is None
    assert _zero_members(model)
    assert model.members["clinical"].weight.requires_grad
    assert torch.equal(model.head.linear.weight, head_before)  # the head is not touched either


def test_no_clinical_penalty_fits_nothing_and_leaves_the_members_at_zero():
    members = MembersConfig(linear=["genomics"], clinical_penalty=None)
    model = _model(members=members)
    assert list(model.members) == ["clinical", "genomics"]
    head_before = model.head.linear.weight.detach().clone()
    assert fit_linear_members(model, _Data(150, seed=8), CPU, members) is None
    assert _zero_members(model)
    # nothing is frozen: every member trains with the deep residual
    assert all(lm.weight.requires_grad for lm in model.members.values())
    assert torch.equal(model.head.linear.weight, head_before)


@pytest.mark.parametrize("penalties", [(1.0,), (0.1, 10.0)])
def test_fit_is_deterministic(penalties):
    data = _Data(150, seed=5)
    a, b = _model(), _model()
    members = MembersConfig(linear=["genomics"], penalties=list(penalties))
    fit_linear_members(a, data, CPU, members, seed=1)
    fit_linear_members(b, data, CPU, members, seed=1)
    for (_, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q)


class _DataWithText(_Data):
    """As :class:`_Data`, plus a pooled report embedding (kind ``text``) that is pure noise."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(n, seed)
        rng = np.random.default_rng(seed + 100)
        self.text = rng.normal(size=(n, 24)).astype(np.float32)

    def batch(self, idx) -> Batch:
        b = super().batch(idx)
        i = np.asarray(idx)
        b.inputs["report"] = torch.from_numpy(self.text[i])
        b.mask["report"] = torch.ones(len(i), dtype=torch.bool)
        return b


def _model_with_text() -> MultimodalSurvivalModel:
    torch.manual_seed(0)
    specs = {
        "clinical": InputSpec(kind="clinical", n_numeric=1, cardinalities=[3]),
        "genomics": InputSpec(kind="genomics", in_features=40),
        "report": InputSpec(kind="text", in_features=24),
    }
    encoders = {
        "clinical": EncoderConfig(name="clinical_mlp", out_dim=4),
        "genomics": EncoderConfig(name="snn", out_dim=4),
        "report": EncoderConfig(name="text_mlp", out_dim=4),
    }
    return MultimodalSurvivalModel(
        specs,
        encoders,
        FusionConfig(name="concat", dim=4),
        HeadConfig(name="cox"),
        members=MembersConfig(linear=["genomics", "report"]),
        clinical_modality="clinical",
    )


@pytest.mark.parametrize("score", ["c_index", "likelihood"])
def test_each_linear_member_gets_its_own_penalty(score):
    """Informative genes keep a small penalty while a noise text embedding is switched off."""
    data = _DataWithText(400, seed=6)
    model = _model_with_text()
    assert set(model.members) - {"clinical"} == {"genomics", "report"}
    fit_linear_members(
        model,
        data,
        CPU,
        MembersConfig(
            linear=["genomics", "report"], penalties=[0.01, 0.1, 1e3], penalty_score=score
        ),
    )
    genes = model.members["genomics"].weight.detach().abs().numpy().ravel()
    text = model.members["report"].weight.detach().abs().numpy().ravel()
    assert genes[:3].min() > 0.1  # the three informative genes survive
    assert text.max() < 0.01  # the noise embedding got the largest penalty


@pytest.mark.parametrize("combine", sorted(COMBINERS))
def test_every_combiner_reports_a_penalty_per_member(combine):
    """Both combiners return a LinearFit naming every member; stacked also weighs the others."""
    assert sorted(COMBINERS) == ["joint", "stacked"]
    data = _DataWithText(150, seed=9)
    model = _model_with_text()
    members = MembersConfig(linear=["genomics", "report"], penalties=[1.0, 1e3], combine=combine)
    fit = fit_linear_members(model, data, CPU, members)
    assert isinstance(fit, LinearFit)
    assert fit.combine == combine and np.isfinite(fit.loss)
    assert set(fit.penalties) == set(model.members) == {"clinical", "genomics", "report"}
    assert fit.penalties["clinical"] == members.clinical_penalty
    assert all(fit.penalties[m] in members.penalties for m in ("genomics", "report"))
    if combine == "stacked":
        assert set(fit.weights) == {"genomics", "report"}  # every non-clinical member
        assert all(len(w) == 1 and np.isfinite(w).all() for w in fit.weights.values())
    else:
        assert fit.weights == {}
    assert set(fit.to_dict()) == {"combine", "penalties", "weights", "loss", "fallback"}
    assert fit.fallback is False  # members.stack_fallback is off by default


def test_a_modality_without_one_feature_vector_cannot_get_a_linear_term():
    from multimodal.exceptions import ConfigError

    specs = {
        "clinical": InputSpec(kind="clinical", n_numeric=1, cardinalities=[3]),
        "ct": InputSpec(kind="imaging", spatial_dims=2, in_channels=1, image_size=(8, 8)),
    }
    encoders = {
        "clinical": EncoderConfig(name="clinical_mlp", out_dim=4),
        "ct": EncoderConfig(name="small_cnn", out_dim=4, options={"channels": [4]}),
    }
    fusion, head = FusionConfig(name="concat", dim=4), HeadConfig(name="cox")
    with pytest.raises(ConfigError, match=r"members\.linear: 'ct' \(imaging\)"):
        MultimodalSurvivalModel(
            specs,
            encoders,
            fusion,
            head,
            members=MembersConfig(linear=["ct"]),
            clinical_modality="clinical",
        )
    # a listed modality the run does not use (a single-modality model) is simply skipped
    specs.pop("ct")
    encoders.pop("ct")
    model = MultimodalSurvivalModel(
        specs,
        encoders,
        fusion,
        head,
        members=MembersConfig(linear=["genomics"]),
        clinical_modality="clinical",
    )
    assert list(model.members) == ["clinical"]


def test_linear_group_means_fit_one_coefficient_per_group():
    """With ``members.group_means`` the genomics member sees group means (pathway scores)."""
    data = _Data(400, seed=7, informative=4)
    groups = [[0, 1, 2, 3], list(range(4, 40))]  # the informative genes form the first group
    specs = {
        "clinical": InputSpec(kind="clinical", n_numeric=1, cardinalities=[3]),
        "genomics": InputSpec(kind="genomics", in_features=40, groups=groups),
    }
    encoders = {
        "clinical": EncoderConfig(name="clinical_mlp", out_dim=4),
        "genomics": EncoderConfig(name="snn", out_dim=4),
    }
    members = MembersConfig(linear=["genomics"], group_means=True, penalties=[0.001, 0.01, 1e3])
    torch.manual_seed(0)
    model = MultimodalSurvivalModel(
        specs,
        encoders,
        FusionConfig(name="concat", dim=4),
        HeadConfig(name="cox"),
        members=members,
        clinical_modality="clinical",
    )
    assert model.members["genomics"].linear.in_features == 2
    batch = data.batch(np.arange(len(data)))
    design, _ = model.linear_designs(batch.inputs, batch.mask)["genomics"]
    np.testing.assert_allclose(design[:, 0].numpy(), data.genes[:, :4].mean(1), rtol=1e-5)
    fit_linear_members(model, data, CPU, members)
    w = model.members["genomics"].weight.detach().numpy().ravel()
    assert w[0] > 1.0 and abs(w[1]) < 0.5 * w[0]  # the informative group carries the effect


def test_stacked_members_weigh_each_modality_by_its_out_of_fold_scores():
    """combine="stacked": informative genes count, a noise text embedding barely does."""
    data, test = _DataWithText(400, seed=6), _DataWithText(400, seed=7)
    members = MembersConfig(
        linear=["genomics", "report"], penalties=[0.01, 0.1, 1.0, 1e3], combine="stacked"
    )
    model = _model_with_text()
    fit = fit_linear_members(model, data, CPU, members)
    assert fit is not None and np.isfinite(fit.loss)
    model.eval()
    batch = test.batch(np.arange(len(test)))
    with torch.no_grad():
        parts = _linear_parts(model, batch)
        risk = model(batch).numpy()
    assert set(parts) == {"clinical", "genomics", "report"}
    np.testing.assert_allclose(risk, sum(parts.values()), atol=1e-5)  # still linear at step 0
    assert not model.members["report"].weight.requires_grad
    assert np.corrcoef(risk, test.true_lin)[0, 1] > 0.85
    assert harrell_c(test.time, test.event, risk) > 0.7
    assert parts["report"].std() < 0.25 * parts["genomics"].std()
    # deterministic, like the joint fit
    again = _model_with_text()
    fit_linear_members(again, data, CPU, members)
    for (_, p), (_, q) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q)


def _stacked_weights(data, **members) -> LinearFit:
    config = MembersConfig(
        linear=["genomics", "report"], penalties=[0.1, 1.0, 1e3], combine="stacked", **members
    )
    fit = fit_linear_members(_model_with_text(), data, CPU, config)
    assert fit is not None
    return fit


def test_the_second_stage_penalty_shrinks_the_member_weights():
    """members.stack_penalty: a larger ridge on the (standardised) weights gives smaller ones;
    the penalties of the first stage are untouched, and a fixed penalty is not recorded."""
    data = _DataWithText(200, seed=11)
    weights = []
    for penalty in (0.0, 0.1, 10.0):
        fit = _stacked_weights(data, stack_penalty=penalty)
        assert "stack" not in fit.penalties
        weights.append(sum(abs(w[0]) for w in fit.weights.values()))
    assert weights[0] > weights[1] > weights[2]
    assert weights[2] < 0.2 * weights[0]


def test_auto_stack_penalty_is_chosen_by_cross_validation_and_recorded():
    """stack_penalty: auto picks one of stack_penalties (saved as penalties["stack"]); strong
    genomic signal on enough patients keeps a real weight, and the choice is deterministic."""
    data = _DataWithText(400, seed=6)
    candidates = [0.0, 0.01, 0.1, 1.0, 100.0]
    fit = _stacked_weights(data, stack_penalty="auto", stack_penalties=candidates)
    assert fit.penalties["stack"] in candidates
    assert fit.penalties["stack"] < 100.0  # the informative genes are not shrunk away
    assert fit.weights["genomics"][0] > 0.3
    again = _stacked_weights(data, stack_penalty="auto", stack_penalties=candidates)
    assert again.to_dict() == fit.to_dict()
    single = _stacked_weights(data, stack_penalty="auto", stack_penalties=[0.3])
    assert single.penalties["stack"] == 0.3


def test_auto_stack_penalty_shrinks_noise_members_on_a_small_cohort():
    """On 80 patients whose genomics carry no signal, CV prefers a penalty > 0 and the members'
    weights stay below those of the unpenalised second stage."""
    data = _DataWithText(80, seed=3)
    data.genes = np.random.default_rng(99).normal(size=data.genes.shape).astype(np.float32)
    free = _stacked_weights(data, stack_penalty=0.0)
    auto = _stacked_weights(data, stack_penalty="auto")
    total = {k: sum(abs(w[0]) for w in f.weights.values()) for k, f in (("0", free), ("a", auto))}
    assert total["a"] <= total["0"] + 1e-6
    assert auto.penalties["stack"] in MembersConfig().stack_penalties


def test_stack_penalties_must_not_be_negative():
    with pytest.raises(Exception, match="stack_penalty"):
        MembersConfig(stack_penalty=-1.0)
    with pytest.raises(Exception, match="stack_penalt"):
        MembersConfig(stack_penalties=[0.0, -0.1])


@pytest.mark.parametrize("only_member", [False, True])
def test_a_member_with_too_few_events_is_left_out_of_the_stack(only_member, caplog):
    """members.min_events: a report present for a dozen patients gets weight 0, the off
    penalty and zero coefficients, with a log line; the rest is fitted as before. Left out as
    the only non-clinical member, the model is the clinical Cox model."""
    data = _DataWithText(300, seed=5)
    data.text_present = np.zeros(len(data), dtype=bool)
    data.text_present[:12] = True
    batch_of = data.batch

    def batch(idx):
        b = batch_of(idx)
        b.mask["report"] = torch.from_numpy(data.text_present[np.asarray(idx)])
        if only_member:
            b.mask["genomics"] = torch.zeros(len(np.asarray(idx)), dtype=torch.bool)
        return b

    data.batch = batch
    members = MembersConfig(
        linear=["genomics", "report"], penalties=[0.1, 1.0, 1e3], combine="stacked", min_events=10
    )
    model = _model_with_text()
    with caplog.at_level("INFO", logger="multimodal.training.combine"):
        fit = fit_linear_members(model, data, CPU, members)
    assert fit is not None and np.isfinite(fit.loss)
    assert fit.weights["report"] == [0.0] and fit.penalties["report"] == 1e3
    assert float(model.members["report"].weight.abs().max()) == 0.0
    assert "report left out" in caplog.text and "min_events is 10" in caplog.text
    if only_member:
        assert fit.weights["genomics"] == [0.0]
    else:
        assert fit.weights["genomics"][0] > 0.3
    with torch.no_grad():
        clinical = _linear_parts(model, data.batch(np.arange(300)))["clinical"]
    assert harrell_c(data.time, data.event, clinical) > 0.6


def test_a_member_without_evidence_beside_the_clinical_covariates_gets_weight_zero(caplog):
    """members.stack_min_lr: the noise report's out-of-fold scores add less than 3.84 (chi-square,
    1 df, 5 %) to the clinical covariates' likelihood and get weight 0, with a log line; the
    informative genes keep theirs. Off (0), the noise report gets a weight of its own."""
    data = _DataWithText(400, seed=6)
    off = _stacked_weights(data)
    with caplog.at_level("INFO", logger="multimodal.training.combine"):
        on = _stacked_weights(data, stack_min_lr=3.84)
    assert on.weights["report"] == [0.0] and off.weights["report"][0] > 0
    assert on.weights["genomics"][0] > 0.3
    assert "report left out (its out-of-fold scores add a likelihood-ratio statistic" in caplog.text
    assert "genomics left out" not in caplog.text


def test_repeated_inner_splits_average_the_second_stage_over_the_repeats():
    """members.stack_repeats: with one penalty to choose from, R repeats give the mean of the
    second stages fitted on R single splits (seeds seed + r * 1009); R = 1 is the single split."""
    data = _DataWithText(160, seed=12)
    config = {"linear": ["genomics", "report"], "penalties": [1.0, 1e3], "combine": "stacked"}

    def fitted(repeats: int, seed: int) -> tuple[dict, MultimodalSurvivalModel]:
        model = _model_with_text()
        members = MembersConfig(**config, stack_repeats=repeats)
        fit = fit_linear_members(model, data, CPU, members, seed=seed)
        assert fit is not None
        return fit.to_dict(), model

    single, _ = fitted(1, 0)
    assert (
        single
        == fit_linear_members(
            _model_with_text(), data, CPU, MembersConfig(**config), seed=0
        ).to_dict()
    )
    averaged, model = fitted(3, 0)
    singles = [fitted(1, r * 1009) for r in range(3)]
    for name in ("genomics", "report"):
        mean = np.mean([f["weights"][name][0] for f, _ in singles])
        assert averaged["weights"][name][0] == pytest.approx(mean, abs=2e-4)
        # the installed coefficients: the common direction times the averaged weight
        direction = [m.members[name].weight.detach().numpy() for _, m in singles]
        expected = np.mean(direction, axis=0)
        np.testing.assert_allclose(
            model.members[name].weight.detach().numpy(), expected, rtol=1e-3, atol=1e-5
        )
    clinical = np.mean([m.members["clinical"].weight.detach().numpy() for _, m in singles], 0)
    np.testing.assert_allclose(
        model.members["clinical"].weight.detach().numpy(), clinical, rtol=1e-3, atol=1e-5
    )
    assert averaged["weights"] != singles[0][0]["weights"]  # the other splits count


def _boosted(**extra) -> MembersConfig:
    """A linear genomics member and a small gradient-boosting member, stacked."""
    return MembersConfig(
        linear=["genomics"], penalties=[1.0, 1e3], combine="stacked", trees=["boosting"], **extra
    )


def test_repeated_inner_splits_with_tree_members():
    """Tree members' out-of-fold scores are made on every repeat's splits; the fit is
    deterministic and differs from the single split's."""
    data = _Data(150, seed=13)
    members = _boosted(
        tree_features=10, tree_options={"boosting": {"n_estimators": 20}}, stack_repeats=2
    )
    fits = []
    for _ in range(2):
        model = _model(members=members)
        fit = fit_linear_members(model, data, CPU, members)
        assert fit is not None and np.isfinite(fit.loss)
        fits.append(fit.to_dict())
        assert model.trees.fitted or fit.weights["tree:boosting"][0] == 0.0
    assert fits[0] == fits[1]
    assert set(fits[0]["weights"]) == {"genomics", "tree:boosting"}
    # the trees' own random seed is the fit's in every repeat, so a single split with another
    # seed is not one of the repeats here; the repeats' scores must still change the weights
    single = members.model_copy(update={"stack_repeats": 1})
    one = fit_linear_members(_model(members=single), data, CPU, single)
    assert one.weights != fits[0]["weights"]


def test_stack_repeats_must_be_positive():
    with pytest.raises(Exception, match="stack_repeats"):
        MembersConfig(stack_repeats=0)


def test_tree_members_may_choose_their_features_by_raw_variance():
    """members.tree_selection: variance -- the trees get the genes with the largest raw
    variance (the spec's scales; the inputs arrive z-scored), whatever their association with
    the outcome; cox_score picks the informative ones."""
    data = _Data(200, seed=14, n_genes=20)
    scales = np.ones(20)
    scales[[10, 12, 15]] = [9.0, 7.0, 5.0]  # noise genes with the widest raw spread
    data.genes = (data.genes - data.genes.mean(0)) / data.genes.std(0)
    chosen = {}
    for selection in ("variance", "cox_score"):
        members = _boosted(
            tree_features=3,
            tree_selection=selection,
            tree_options={"boosting": {"n_estimators": 10}},
        )
        model = _model(n_genes=20, members=members)
        model.specs["genomics"] = dataclasses.replace(
            model.specs["genomics"], scales=scales.tolist()
        )
        fit_linear_members(model, data, CPU, members)
        chosen[selection] = model.trees.columns["genomics"].index.tolist()
    assert chosen["variance"] == [10, 12, 15]
    assert chosen["cox_score"] == [0, 1, 2]  # the informative genes (see _Data)


def _fallback_fit(data, fallback: bool, n_genes: int):
    members = MembersConfig(
        linear=["genomics"],
        penalties=[1.0, 10.0, 1e3],
        combine="stacked",
        stack_fallback=fallback,
    )
    model = _model(n_genes=n_genes, members=members)
    fit = fit_linear_members(model, data, CPU, members)
    assert fit is not None
    return fit, model


def test_stack_fallback_gives_the_clinical_model_where_the_members_are_noise(caplog):
    """members.stack_fallback: genes of pure noise whose out-of-fold scores the plain second stage
    weighs (2.2 here) predict held-out training patients worse than the clinical covariates, so
    the member's weight is 0 and the clinical coefficients are the clinical Cox model's."""
    data = _Data(200, seed=12, n_genes=60, informative=0)
    plain, _ = _fallback_fit(data, False, 60)
    assert plain.weights["genomics"][0] > 1.0
    with caplog.at_level("INFO", logger="multimodal.training.combine"):
        fit, model = _fallback_fit(data, True, 60)
    assert fit.weights["genomics"][0] == 0.0 and fit.fallback and not plain.fallback
    assert "every member weight set to 0 (members.stack_fallback)" in caplog.text
    summary = members_summary([fit.to_dict(), plain.to_dict()], None)
    assert "clinical covariates alone in 1 of 2 folds (members.stack_fallback)" in summary
    assert float(model.members["genomics"].linear.weight.abs().max()) == 0.0
    alone = _model(n_genes=60, linear=())
    fit_linear_members(alone, data, CPU, MembersConfig(linear=[]))
    np.testing.assert_allclose(
        model.members["clinical"].linear.weight.detach().numpy(),
        alone.members["clinical"].linear.weight.detach().numpy(),
        atol=1e-4,
    )


def test_stack_fallback_keeps_members_that_carry_signal(caplog):
    """Informative genes raise the held-out C: the fit is the plain second stage's."""
    data = _Data(200, seed=12, n_genes=60, informative=3)
    with caplog.at_level("INFO", logger="multimodal.training.combine"):
        fit, model = _fallback_fit(data, True, 60)
    plain, plain_model = _fallback_fit(data, False, 60)
    assert fit.to_dict() == plain.to_dict() and fit.weights["genomics"][0] > 0.5
    assert "held-out C of the second stage" in caplog.text
    assert "members.stack_fallback)" not in caplog.text
    for name in ("clinical", "genomics"):
        torch.testing.assert_close(
            model.members[name].linear.weight, plain_model.members[name].linear.weight
        )
