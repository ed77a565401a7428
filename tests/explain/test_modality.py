"""Modality contributions: exact Shapley values, leave-one-out, masking like a missing modality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import multimodal
from multimodal.explain.modality import leave_one_out, shapley_values


def _game(n_players: int, fn) -> np.ndarray:
    """Values (1, 2^M) of the game ``fn(frozenset of players)``."""
    return np.array(
        [[fn(frozenset(j for j in range(n_players) if c >> j & 1)) for c in range(2**n_players)]]
    )


def test_shapley_of_an_additive_game_is_each_players_own_value():
    a = np.array([0.5, -1.0, 2.0, 0.25])
    phi = shapley_values(_game(4, lambda s: sum(a[j] for j in s)))
    np.testing.assert_allclose(phi[0], a, atol=1e-12)


def test_shapley_splits_an_interaction_equally_and_ignores_a_dummy():
    # v = 1 only when players 0 and 1 are both in: they share it; player 2 is a dummy
    phi = shapley_values(_game(3, lambda s: float({0, 1} <= s)))
    np.testing.assert_allclose(phi[0], [0.5, 0.5, 0.0], atol=1e-12)
    loo = leave_one_out(_game(3, lambda s: float({0, 1} <= s)))
    np.testing.assert_allclose(loo[0], [1.0, 1.0, 0.0], atol=1e-12)


def test_shapley_matches_the_permutation_definition_on_a_random_game():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 8, 3))  # two patients, 3 players, 3 horizons
    phi = shapley_values(values)
    for j in range(3):
        total = np.zeros((2, 3))
        for order in itertools.permutations(range(3)):
            before = sum(1 << k for k in order[: order.index(j)])
            total += values[:, before | 1 << j] - values[:, before]
        np.testing.assert_allclose(phi[:, j], total / 6, atol=1e-12)
    np.testing.assert_allclose(phi.sum(1), values[:, 7] - values[:, 0], atol=1e-12)


def test_shapley_needs_a_power_of_two_of_coalitions():
    with pytest.raises(ValueError, match="power of 2"):
        shapley_values(np.zeros((1, 6)))


def test_model_shapley_values_are_efficient(smoke_explanation):
    mc = smoke_explanation.modality_contributions
    per = mc.groupby("patient_id").agg(
        total=("shapley", "sum"), risk=("risk", "first"), none=("risk_no_data", "first")
    )
    np.testing.assert_allclose(per["total"], per["risk"] - per["none"], atol=1e-9)
    for t in (12, 36):
        per = mc.groupby("patient_id").agg(
            total=(f"shapley_surv_{t}", "sum"),
            s=(f"surv_{t}", "first"),
            none=(f"surv_no_data_{t}", "first"),
        )
        np.testing.assert_allclose(per["total"], per["s"] - per["none"], atol=1e-9)


def test_a_missing_modality_contributes_exactly_nothing(smoke_explanation, smoke_cohort):
    mc = smoke_explanation.modality_contributions
    absent = mc[~mc["present"]]
    assert len(absent) > 5  # 20% missing per modality in the synthetic cohort
    value_cols = [c for c in mc.columns if c.startswith(("loo_", "shapley"))]
    assert (absent[value_cols] == 0).all().all()
    avail = smoke_cohort.availability()
    row = mc.iloc[0]
    assert bool(avail.loc[row.patient_id, row.modality]) == bool(row.present)


def test_contributions_use_the_ensembles_risk(smoke_explanation, smoke_model, smoke_cohort):
    mc = smoke_explanation.modality_contributions
    risk = mc.groupby("patient_id")["risk"].first()
    predicted = smoke_model.predict_risk(smoke_cohort)
    np.testing.assert_allclose(risk.reindex(predicted.index), predicted, atol=1e-5)
    surv = mc.groupby("patient_id")["surv_36"].first()
    predicted = smoke_model.predict_survival(smoke_cohort, [36.0])[36.0]
    np.testing.assert_allclose(surv.reindex(predicted.index), predicted, atol=1e-4)
    assert set(mc["modality"]) == {"clinical", "genomics", "report", "ct", "wsi"}


# --------------------------------------------------------------------- linear members
def _patient_without(cohort, pid: str, hidden: set[str]):
    """Patient ``pid`` of ``cohort`` with the modalities ``hidden`` missing from the data."""
    one = cohort.subset([pid])
    kept = {m: s for m, s in one.sources.items() if m not in hidden}
    return multimodal.Cohort(one.patients, kept, name=one.name, root=one.root)


def _complete_patients(cohort, n: int) -> list[str]:
    avail = cohort.availability()
    return [str(p) for p in avail.index[avail.all(axis=1)][:n]]


def _linear_terms(model, cohort, pid: str) -> dict[str, float]:
    """Each linear member's term in the patient's risk, averaged over the fold models."""
    terms: dict[str, float] = {}
    for fm in model.folds:
        data = model.fold_data(fm, cohort.subset([pid]), [pid])
        inputs = {m: data.stores[m].batch(np.arange(1)) for m in fm.model.members}
        seen = {m: torch.ones(1, dtype=torch.bool) for m in fm.model.members}
        with torch.no_grad():
            for m, out in fm.model.member_outputs(inputs, seen).items():
                terms[m] = terms.get(m, 0.0) + float(out.sum()) / len(model.folds)
    return terms


def test_contributions_include_the_linear_members_share(linear_model, linear_cohort):
    """configs/demo.yaml's members with the deep residual at zero: each modality's only share is
    its linear term, so its Shapley value is that term, and hiding it equals the modality missing
    from the data (the public prediction path). Tolerances: float32 forward passes."""
    mods = linear_model.modalities
    assert set(linear_model.folds[0].model.members) == set(mods)  # a linear member each
    pids = _complete_patients(linear_cohort, 3)
    mc = linear_model.explain(
        linear_cohort, patient_ids=pids, methods=["modalities"]
    ).modality_contributions.set_index(["patient_id", "modality"])
    for pid in pids:
        risk = {
            name: float(
                linear_model.predict_risk(_patient_without(linear_cohort, pid, hidden))[pid]
            )
            for name, hidden in [("all", set()), ("none", set(mods))] + [(m, {m}) for m in mods]
        }
        phi = mc.loc[pid, "shapley"]
        assert phi.sum() == pytest.approx(risk["all"] - risk["none"], abs=1e-5)  # efficiency
        terms = _linear_terms(linear_model, linear_cohort, pid)
        for m in mods:
            assert mc.loc[(pid, m), "loo_delta"] == pytest.approx(risk["all"] - risk[m], abs=1e-5)
            assert phi[m] == pytest.approx(terms[m], abs=1e-5)
            assert abs(phi[m]) > 1e-4  # a linear-only modality is not explained away as 0


def test_a_shapley_budget_falls_back_to_leave_one_out(linear_model, linear_cohort):
    pids = _complete_patients(linear_cohort, 2)
    exact = linear_model.explain(linear_cohort, patient_ids=pids, methods=["modalities"])
    cheap = linear_model.explain(
        linear_cohort, patient_ids=pids, methods=["modalities"], max_shapley_modalities=2
    )
    a, b = exact.modality_contributions, cheap.modality_contributions
    assert b["shapley"].isna().all()
    assert list(b.columns) == list(a.columns)
    for col in [c for c in a.columns if c.startswith(("loo_", "risk", "surv_"))]:
        np.testing.assert_allclose(b[col], a[col], atol=1e-9)
    assert any(c.startswith("loo_surv_") for c in a.columns)  # the horizons are checked too
    assert cheap.meta["max_shapley_modalities"] == 2
    assert exact.meta["max_shapley_modalities"] is None  # default: exact, as before


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_shapley_modalities", -1), ("occlusion_overlap", 1.0), ("n_steps", 0)],
)
def test_explain_refuses_a_bad_budget(linear_model, linear_cohort, option, value):
    with pytest.raises(ValueError, match=option):
        linear_model.explain(linear_cohort, methods=["modalities"], **{option: value})
