"""Feature attributions: integrated gradients find the pathways that generated the hazard."""

from __future__ import annotations

import numpy as np
import torch

from multimodal.data.synth import PATHWAYS

#: the synthetic generator's OS pathways (multimodal.data.synth._OS_PATHWAY_EFFECTS)
OS_PATHWAYS = {PATHWAYS[0], PATHWAYS[1], PATHWAYS[2]}


def test_top_genomic_groups_are_the_true_os_pathways(tabular_explanation):
    ex = tabular_explanation
    genes = ex.features[ex.features["modality"] == "genomics"]
    assert set(genes["group"]) == set(PATHWAYS) | {"background"}
    # mean |attribution| per gene, averaged within each group (groups differ in size)
    per_gene = genes.assign(a=genes["attribution"].abs()).groupby(["group", "feature"])["a"].mean()
    per_group = per_gene.groupby("group").mean().sort_values(ascending=False)
    top3 = set(per_group.index[:3])
    assert len(top3 & OS_PATHWAYS) >= 2, per_group
    true_mean = per_group[list(OS_PATHWAYS)].mean()
    other_mean = per_group.drop(list(OS_PATHWAYS)).mean()
    assert true_mean > 1.5 * other_mean, per_group
    # group sums: the ranking of Explanation.top_groups puts a true pathway first
    assert ex.top_groups("genomics")["group"].iloc[0] in OS_PATHWAYS


def test_clinical_attributions_rank_stage_above_sex(tabular_explanation):
    ex = tabular_explanation
    clin = ex.features[ex.features["modality"] == "clinical"]
    imp = clin.assign(a=clin["attribution"].abs()).groupby("feature")["a"].mean()
    assert set(imp.index) == {"age", "sex", "stage"}
    assert imp["stage"] > imp["sex"]  # stage: 0.85 per score unit; sex: 0.3 in the generator
    assert set(clin["group"]) == {"numeric", "categorical"}
    stage = clin[clin["feature"] == "stage"]
    # higher stage -> higher risk contribution
    mean_by_stage = stage.groupby("value")["attribution"].mean()
    assert mean_by_stage["IV"] > mean_by_stage["I"]


def test_integrated_gradients_are_complete(tabular_model, tabular_cohort):
    """Per fold: sum of a patient's genomic attributions = risk(x) - risk(training mean)."""
    from multimodal.explain._forward import encode, fold_inputs, head_outputs, risk_of
    from multimodal.explain.features import genomic_attributions

    ids = list(tabular_cohort.patients.index[:20])
    folds = fold_inputs(tabular_model, tabular_cohort, ids)[:1]
    attr = genomic_attributions(folds, tabular_cohort, n_steps=64)
    total = attr.groupby("patient_id")["attribution"].sum()
    fi = folds[0]
    rows = np.flatnonzero(fi.data.stores["genomics"].present)
    emb = encode(fi.model, fi.data, fi.device)
    mask = {m: torch.from_numpy(fi.data.stores[m].present[rows]) for m in fi.model.modalities}
    e = {m: v[torch.as_tensor(rows)] for m, v in emb.items()}
    x = fi.data.stores["genomics"].values[rows]
    with torch.no_grad():
        full = risk_of(fi.model, head_outputs(fi, rows, mask, e, live={"genomics": x}))
        base = risk_of(
            fi.model, head_outputs(fi, rows, mask, e, live={"genomics": torch.zeros_like(x)})
        )
    expected = (full - base).numpy()
    got = total.reindex([fi.data.ids[r] for r in rows]).to_numpy()
    np.testing.assert_allclose(got, expected, atol=0.02 * np.abs(expected).max() + 1e-4)
    assert attr["value"].notna().all()  # raw expression values come along


def test_smoke_features_cover_every_present_patient(smoke_explanation, smoke_cohort):
    f = smoke_explanation.features
    genes = f[f["modality"] == "genomics"]
    has = smoke_cohort.availability()["genomics"]
    assert set(genes["patient_id"]) == set(has.index[has])
    assert genes.groupby("patient_id").size().nunique() == 1
    assert np.isfinite(f["attribution"].astype(float)).all()


def test_own_integrated_gradients_equal_captum_and_are_complete():
    """The package's Gauss-Legendre IG gives captum's attributions (its default method) and
    sums to f(x) - f(0) for a smooth model, without importing captum."""
    import torch

    from multimodal.explain.features import integrated_gradients

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(x):
        return net(x).squeeze(-1)

    x = torch.randn(5, 7)
    ours = integrated_gradients(forward, x, n_steps=40)
    gap = forward(x) - forward(torch.zeros_like(x))
    torch.testing.assert_close(ours.sum(1), gap.detach(), atol=1e-4, rtol=1e-4)
    import pytest

    captum = pytest.importorskip("captum.attr")
    ref = captum.IntegratedGradients(forward).attribute(
        x, baselines=torch.zeros_like(x), n_steps=40
    )
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
