"""The explanation folder the dashboard reads: names, columns, round trip, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from multimodal.exceptions import DataError, RunFolderError
from multimodal.explain import Explanation

COLUMNS = {
    "modality_contributions.csv": {
        "patient_id",
        "modality",
        "loo_delta",
        "shapley",
        "shapley_surv_12",
    },
    "features.csv": {"patient_id", "modality", "feature", "group", "attribution"},
    "text_spans.csv": {"patient_id", "sentence_index", "start", "end", "attribution"},
    "bags.csv": {"patient_id", "modality", "instance", "attention"},
    "saliency.csv": {"patient_id", "modality", "image_path", "file"},
}


def test_save_writes_the_dashboard_files_and_loads_back(smoke_explanation, tmp_path):
    folder = smoke_explanation.save(tmp_path / "explanations")
    for name, cols in COLUMNS.items():
        frame = pd.read_csv(folder / name)
        assert cols <= set(frame.columns), name
    index = pd.read_csv(folder / "saliency.csv", dtype={"patient_id": str})
    for row in index.itertuples():
        assert row.file == f"saliency/{row.patient_id}__{row.modality}.npy"
        assert np.load(folder / row.file).shape == (1, 8, 8, 8)
    back = Explanation.load(folder)
    pd.testing.assert_frame_equal(
        back.modality_contributions, smoke_explanation.modality_contributions, check_dtype=False
    )
    assert back.features["attribution"].to_numpy() == pytest.approx(
        smoke_explanation.features["attribution"].to_numpy()
    )
    key = next(iter(smoke_explanation.saliency))
    np.testing.assert_allclose(back.saliency[key][0], smoke_explanation.saliency[key][0])
    assert back.meta["n_fold_models"] == 2 and back.meta["horizons"] == [12.0, 36.0]
    one = back.patient(key[0])
    assert set(one["features"]["patient_id"]) == {key[0]}


def test_load_of_a_folder_without_an_explanation(tmp_path):
    with pytest.raises(RunFolderError, match="multimodal explain"):
        Explanation.load(tmp_path)


def test_explain_refuses_unknown_patients_and_methods(smoke_model, smoke_cohort):
    with pytest.raises(DataError, match="not in cohort"):
        smoke_model.explain(smoke_cohort, patient_ids=["SYN-9999"])
    with pytest.raises(ValueError, match=r"Did you mean .modalities."):
        smoke_model.explain(smoke_cohort, methods=["modality"])


def test_cli_explain_writes_run_dir_explanations(smoke_model, smoke_cohort):
    from multimodal.cli import app

    ids = list(smoke_cohort.patients.index[:3])
    res = CliRunner().invoke(
        app,
        [
            "explain",
            str(smoke_model.run_dir),
            "--cohort",
            str(smoke_cohort.root / "cohort.yaml"),
            "--patients",
            ",".join(ids),
            "--saliency-limit",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    folder = smoke_model.run_dir / "explanations"
    mc = pd.read_csv(folder / "modality_contributions.csv")
    assert sorted(mc["patient_id"].unique()) == sorted(ids)
    assert len(pd.read_csv(folder / "saliency.csv")) <= 1
