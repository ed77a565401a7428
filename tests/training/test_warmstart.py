"""The linear warm start: clinical + ridge-penalised genomics Cox fit before the deep branches train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.config import EncoderConfig, FusionConfig, HeadConfig
from multimodal.models.model import MultimodalSurvivalModel
from multimodal.survival.metrics import harrell_c
from multimodal.training.warmstart import choose_penalty, warm_start_clinical
from multimodal.types import Batch, InputSpec


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


def _model(n_genes: int = 40, linear=("genomics",)) -> MultimodalSurvivalModel:
    torch.manual_seed(0)
    specs = {
        "clinical": InputSpec(kind="clinical", n_numeric=1, cardinalities=[3]),
        "genomics": InputSpec(kind="genomics", in_features=n_genes),
    }
    encoders = {
        "clinical": EncoderConfig(name="clinical_mlp", out_dim=4),
        "genomics": EncoderConfig(name="snn", out_dim=4),
    }
    fusion = FusionConfig(name="concat", dim=4, linear_modalities=list(linear))
    return MultimodalSurvivalModel(
        specs, encoders, fusion, HeadConfig(name="cox"), None, "clinical"
    )


def test_warm_start_makes_the_model_a_penalised_linear_cox_at_step_zero():
    data = _Data(400, seed=0)
    model = _model()
    loss = warm_start_clinical(model, data, torch.device("cpu"), penalties=(0.01, 1.0, 1e4))
    assert loss is not None and np.isfinite(loss)
    model.eval()
    batch = data.batch(np.arange(len(data)))
    with torch.no_grad():
        risk = model(batch).numpy()
        linear_only = sum(
            (x @ layer.weight.T).squeeze(-1) * present
            for (x, present), layer in zip(
                model.linear_design(batch).values(),
                [model.clinical_linear, model.omics_linear["genomics"]],
            )
        ).numpy()
    np.testing.assert_allclose(risk, linear_only, atol=1e-5)  # deep residual starts at zero
    # the informative genes get the largest genomic coefficients, and they are frozen
    w = model.omics_linear["genomics"].weight.detach().numpy().ravel()
    assert set(np.argsort(-np.abs(w))[:3]) == {0, 1, 2}
    assert not model.omics_linear["genomics"].weight.requires_grad
    assert model.clinical_linear.weight.requires_grad
    # the fit is a real Cox model: concordant with the true linear predictor on new patients
    test = _Data(400, seed=1)
    with torch.no_grad():
        r = model(test.batch(np.arange(len(test)))).numpy()
    assert harrell_c(test.time, test.event, r) > 0.7
    assert np.corrcoef(r, test.true_lin)[0, 1] > 0.85


def test_uninformative_genomics_get_the_largest_penalty():
    data = _Data(300, seed=2, informative=0)
    model = _model()
    warm_start_clinical(model, data, torch.device("cpu"), penalties=(0.01, 0.1, 1e3))
    w = model.omics_linear["genomics"].weight.detach().abs().max().item()
    assert w < 0.01  # noise genes shrunk to ~0: the chosen penalty was 1e3


def test_without_linear_modalities_only_the_clinical_path_is_fitted():
    data = _Data(200, seed=3)
    model = _model(linear=())
    assert len(model.omics_linear) == 0
    warm_start_clinical(model, data, torch.device("cpu"))
    w = model.clinical_linear.weight.detach().numpy().ravel()
    assert w[0] > 0.4  # age effect 0.8, shrunk a little by the ridge


def test_choose_penalty_prefers_larger_penalty_on_ties_and_best_score_otherwise():
    event = np.array([1, 0] * 30)
    flat = choose_penalty(lambda a, b, lam: 0.6, event, (1.0, 10.0, 100.0))
    assert flat == 100.0
    peaked = choose_penalty(lambda a, b, lam: -abs(np.log10(lam) - 1), event, (1.0, 10.0, 100.0))
    assert peaked == 10.0


def test_non_cox_heads_are_left_alone():
    specs = {"clinical": InputSpec(kind="clinical", n_numeric=1, cardinalities=[3])}
    model = MultimodalSurvivalModel(
        specs,
        {"clinical": EncoderConfig(name="clinical_mlp", out_dim=4)},
        FusionConfig(name="concat", dim=4),
        HeadConfig(name="pmf"),
        cuts=[0.0, 0.5, 1.0, 2.0],
        clinical_modality="clinical",
    )
    assert warm_start_clinical(model, _Data(50, seed=4), torch.device("cpu")) is None


@pytest.mark.parametrize("penalties", [(1.0,), (0.1, 10.0)])
def test_warm_start_is_deterministic(penalties):
    data = _Data(150, seed=5)
    a, b = _model(), _model()
    warm_start_clinical(a, data, torch.device("cpu"), penalties=penalties, seed=1)
    warm_start_clinical(b, data, torch.device("cpu"), penalties=penalties, seed=1)
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
    fusion = FusionConfig(name="concat", dim=4, linear_modalities=["genomics", "report"])
    return MultimodalSurvivalModel(
        specs, encoders, fusion, HeadConfig(name="cox"), None, "clinical"
    )


@pytest.mark.parametrize("score", ["c_index", "likelihood"])
def test_each_linear_modality_gets_its_own_penalty(score):
    """Informative genes keep a small penalty while a noise text embedding is switched off."""
    data = _DataWithText(400, seed=6)
    model = _model_with_text()
    assert set(model.omics_linear) == {"genomics", "report"}
    warm_start_clinical(model, data, torch.device("cpu"), penalties=(0.01, 0.1, 1e3), score=score)
    genes = model.omics_linear["genomics"].weight.detach().abs().numpy().ravel()
    text = model.omics_linear["report"].weight.detach().abs().numpy().ravel()
    assert genes[:3].min() > 0.1  # the three informative genes survive
    assert text.max() < 0.01  # the noise embedding got the largest penalty


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
    fusion = FusionConfig(name="concat", dim=4, linear_modalities=["ct"])
    with pytest.raises(ConfigError, match=r"linear_modalities: 'ct' \(imaging\)"):
        MultimodalSurvivalModel(specs, encoders, fusion, HeadConfig(name="cox"), None, "clinical")
    # a listed modality the run does not use (a single-modality model) is simply skipped
    fusion = FusionConfig(name="concat", dim=4, linear_modalities=["genomics"])
    specs.pop("ct")
    encoders.pop("ct")
    model = MultimodalSurvivalModel(
        specs, encoders, fusion, HeadConfig(name="cox"), None, "clinical"
    )
    assert len(model.omics_linear) == 0


def test_linear_group_means_fit_one_coefficient_per_group():
    """With ``fusion.linear_group_means`` the genomics term sees group means (pathway scores)."""
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
    fusion = FusionConfig(
        name="concat", dim=4, linear_modalities=["genomics"], linear_group_means=True
    )
    torch.manual_seed(0)
    model = MultimodalSurvivalModel(
        specs, encoders, fusion, HeadConfig(name="cox"), None, "clinical"
    )
    assert model.omics_linear["genomics"].in_features == 2
    batch = data.batch(np.arange(len(data)))
    design, _ = model.linear_design(batch)["genomics"]
    np.testing.assert_allclose(design[:, 0].numpy(), data.genes[:, :4].mean(1), rtol=1e-5)
    warm_start_clinical(model, data, torch.device("cpu"), penalties=(0.001, 0.01, 1e3))
    w = model.omics_linear["genomics"].weight.detach().numpy().ravel()
    assert w[0] > 1.0 and abs(w[1]) < 0.5 * w[0]  # the informative group carries the effect


def test_stacked_linear_paths_weigh_each_modality_by_its_out_of_fold_scores():
    """combine="stacked": informative genes count, a noise text embedding barely does."""
    data, test = _DataWithText(400, seed=6), _DataWithText(400, seed=7)
    model = _model_with_text()
    loss = warm_start_clinical(
        model, data, torch.device("cpu"), penalties=(0.01, 0.1, 1.0, 1e3), combine="stacked"
    )
    assert loss is not None and np.isfinite(loss)
    model.eval()
    batch = test.batch(np.arange(len(test)))
    with torch.no_grad():
        design = model.linear_design(batch)
        parts = {
            m: ((design[m][0] @ layer.weight.T).squeeze(-1) * design[m][1]).numpy()
            for m, layer in [
                ("clinical", model.clinical_linear),
                ("genomics", model.omics_linear["genomics"]),
                ("report", model.omics_linear["report"]),
            ]
        }
        risk = model(batch).numpy()
    np.testing.assert_allclose(risk, sum(parts.values()), atol=1e-5)  # still linear at step 0
    assert not model.omics_linear["report"].weight.requires_grad
    assert np.corrcoef(risk, test.true_lin)[0, 1] > 0.85
    assert harrell_c(test.time, test.event, risk) > 0.7
    assert parts["report"].std() < 0.25 * parts["genomics"].std()
    # deterministic, like the joint fit
    again = _model_with_text()
    warm_start_clinical(
        again, data, torch.device("cpu"), penalties=(0.01, 0.1, 1.0, 1e3), combine="stacked"
    )
    for (_, p), (_, q) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q)
