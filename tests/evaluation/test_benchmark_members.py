"""The benchmark path with every member of configs/tcga.yaml, on one fold of a small cohort in the
TCGA layout: clinical, linear genomics and report terms (lexical text features), both tree
members and the deep residual, then the classical baselines on the same fold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from multimodal.data.synth_tcga import write_tcga_cohort
from multimodal.evaluation.benchmark import run_benchmark
from multimodal.models.run import load_run
from multimodal.shipped import shipped_dir

#: Small versions of the shipped config's costly parts (same members, fewer trees and epochs).
FAST = [
    "train.epochs=3",
    "members.tree_options={boosting: {n_estimators: 30}, forest: {n_estimators: 20}}",
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("tcga_members")
    data = write_tcga_cohort(root / "synth", n_patients=240, seed=3)
    config = shipped_dir("configs") / "tcga.yaml"
    result = run_benchmark(
        data,
        root / "bench",
        config=config,
        fold_indices=[0],
        variants={"ours": ("clinical", "genomics", "report", "report_structured")},
        overrides=FAST,
        n_boot=0,
    )
    return result, data


def test_every_member_is_fitted_and_weighed(bench):
    result, _ = bench
    meta = json.loads(
        (result.out / "runs" / "ours" / "model" / "fold_0" / "model.json").read_text()
    )
    assert meta["members"] == ["clinical", "genomics", "report", "report_structured"]
    assert meta["trees"] == ["boosting", "forest"]
    fit = meta["linear_fit"]
    assert fit["combine"] == "stacked"
    assert set(fit["weights"]) == {
        "genomics",
        "genomics*stage",  # members.interactions: programmes x stage, its own block
        "report",
        "report_structured",
        "tree:boosting",
        "tree:forest",
    }
    weights = [w for ws in fit["weights"].values() for w in ws]
    assert all(w >= 0 for w in weights)  # members.stack_nonnegative
    assert any(w > 0 for w in weights)


def test_every_model_is_scored_on_the_same_fold(bench):
    result, _ = bench
    models = set(result.results.model)
    assert models == {"ours", "clinical_cox", "coxnet", "rsf"}
    assert result.results.c_index.between(0.0, 1.0).all()
    ours = result.results.set_index("model").c_index["ours"]
    assert ours > 0.6  # 48 validation patients; the cohort's true C is about 0.78
    val = result.predictions.groupby("model").patient_id.apply(lambda s: tuple(sorted(s)))
    assert val.nunique() == 1  # every model scored on exactly the same validation patients


def test_the_run_folder_reloads_and_predicts_what_training_predicted(bench):
    result, data = bench
    from multimodal.data.cohort import Cohort

    run = result.out / "runs" / "ours"
    saved = pd.read_csv(run / "predictions.csv")
    val = saved[saved.split == "val"].set_index("patient_id")
    model = load_run(run)
    fresh = model.predict(Cohort.load(data)).set_index("patient_id").loc[val.index]
    # the reloaded model's risks differ from the training-time ones only by its centring
    shift = fresh.risk.to_numpy() - val.risk.to_numpy()
    np.testing.assert_allclose(shift, shift[0], atol=1e-5)
    # the tree members are part of the reloaded model
    fold = model.folds[0].model
    assert fold.trees is not None and fold.trees.kinds == ["boosting", "forest"]
    assert all(fold.trees.ensembles[k].fitted for k in fold.trees.kinds)


def test_the_trees_see_the_genes_their_selection_names(bench):
    """The genomics spec records each column's raw training SD (``scales``, the preprocessing's
    own); the trees' features are the ``tree_features`` columns the config's
    ``members.tree_selection`` ranks first among the training patients."""
    import yaml

    from multimodal.config import MembersConfig
    from multimodal.models.tree_terms import select_columns, select_columns_by_variance

    result, data = bench
    fold_dir = result.out / "runs" / "ours" / "model" / "fold_0"
    meta = json.loads((fold_dir / "model.json").read_text())
    prep = json.loads((fold_dir / "preprocess.json").read_text())
    spec = meta["specs"]["genomics"]
    state = prep["genomics"]["state"]
    assert spec["scales"] == pytest.approx(state["std"])
    assert len(spec["scales"]) == spec["in_features"] == len(state["feature_names"])
    saved = yaml.safe_load((result.out / "runs" / "ours" / "config.yaml").read_text())
    members = MembersConfig(**saved["members"])
    # the refitted model's trees were chosen on every training patient of fold 0
    train = pd.read_csv(data / "splits" / "porpoise_mcat_5fold" / "fold_0.csv")
    ids = train.loc[train.split == "train", "patient_id"]
    raw = pd.read_csv(data / "genomics.csv.gz").set_index("patient_id")
    raw = raw.reindex(ids)[state["feature_names"]]
    z = (raw.fillna(pd.Series(state["median"], index=raw.columns)) - state["mean"]) / state["std"]
    present = raw.notna().any(axis=1).to_numpy()
    clinical = pd.read_csv(data / "clinical.csv").set_index("patient_id").reindex(raw.index)
    if members.tree_selection == "variance":
        expected = select_columns_by_variance(
            z.to_numpy(), present, members.tree_features, np.asarray(state["std"])
        )
    else:
        expected = select_columns(
            z.to_numpy(),
            present,
            clinical.survival_months.to_numpy(float),
            clinical.event.to_numpy() == 1,
            members.tree_features,
        )
    fold = load_run(result.out / "runs" / "ours").folds[0].model
    assert fold.trees.columns["genomics"].index.tolist() == expected.tolist()
