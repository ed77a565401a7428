"""Modality contributions: exact Shapley values, leave-one-out, masking like a missing modality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

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
