"""multimodal.robustness on a tiny run: deterministic, sane, and its parts checked on their own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from multimodal.exceptions import DataError
from multimodal.robustness import (
    Perturbation,
    default_perturbations,
    horizon_label,
    plot_robustness,
    robustness,
    round_horizon,
)


@pytest.fixture(scope="module")
def result(tiny_model, tiny_cohort, small_sizes):
    return robustness(tiny_model, tiny_cohort, sizes=small_sizes, seed=0)


def test_every_modality_is_perturbed_and_dropped(result, tiny_model):
    t = result.table
    assert set(t.loc[t["kind"] == "drop", "modality"]) == set(tiny_model.modalities)
    kinds = set(zip(t["modality"], t["kind"]))
    assert {
        ("clinical", "noise"),
        ("genomics", "noise"),
        ("report", "sentences"),
        ("ct", "image_noise"),
        ("ct", "image_shift"),
    } <= kinds
    assert not result.notes
    assert (t["n_changed"] > 0).all()
    assert t["spearman"].dropna().between(-1, 1).all()
    assert (t["mean_abs_change"] >= 0).all() and (t["max_abs_change"] >= t["mean_abs_change"]).all()


def test_unperturbed_c_index_is_the_runs(result, tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert result.c_index == pytest.approx(metrics["c_index"], abs=1e-9)


def test_hiding_the_modality_that_carries_the_signal_lowers_c(result):
    # the clinical linear member (stage, age) carries most of the synthetic cohort's signal
    drop = result.table[result.table["kind"] == "drop"].set_index("modality")
    assert drop.loc["clinical", "c_index"] < result.c_index - 0.02
    assert drop.loc["clinical", "c_index_change"] == pytest.approx(
        drop.loc["clinical", "c_index"] - result.c_index
    )


def test_same_seed_same_result_other_seed_other_noise(result, tiny_model, tiny_cohort, small_sizes):
    again = robustness(tiny_model, tiny_cohort, sizes=small_sizes, seed=0)
    pd.testing.assert_frame_equal(result.table, again.table)
    pd.testing.assert_frame_equal(result.flipped, again.flipped)
    other = robustness(
        tiny_model, tiny_cohort, sizes={"noise": (0.1,)}, modalities=["clinical"], seed=1
    )
    a = result.table.set_index("perturbation").loc["clinical: noise 0.1 SD", "mean_abs_change"]
    b = other.table.set_index("perturbation").loc["clinical: noise 0.1 SD", "mean_abs_change"]
    assert a > 0
    assert a != b


def test_zero_size_changes_nothing(tiny_model, tiny_cohort):
    """The perturbation paths themselves (noise on stores, rewritten image files, re-split
    reports through the fold's pipelines) reproduce the unperturbed predictions exactly."""
    zero = {"noise": (0.0,), "image_noise": (0.0,), "image_shift": (0.0,), "sentences": (0,)}
    r = robustness(tiny_model, tiny_cohort, sizes=zero, seed=0)
    small = r.table[r.table["kind"] != "drop"]
    assert len(small) == 5
    assert np.allclose(small["max_abs_change"], 0.0, atol=1e-6)
    assert (small["n_flipped"] == 0).all()
    assert r.flipped.empty


def test_flips_are_listed_for_the_smallest_size_only(tiny_model, tiny_cohort):
    r = robustness(
        tiny_model, tiny_cohort, sizes={"noise": (0.5, 3.0)}, modalities=["clinical"], seed=0
    )
    rows = r.table.set_index("perturbation")
    assert set(r.flipped["perturbation"]) <= {"clinical: noise 0.5 SD"}
    assert len(r.flipped) == rows.loc["clinical: noise 0.5 SD", "n_flipped"]
    assert (
        rows.loc["clinical: noise 3 SD", "n_flipped"]
        >= rows.loc["clinical: noise 0.5 SD", "n_flipped"]
    )
    assert set(r.flipped.columns) >= {"patient_id", "fold", "group_before", "group_after"}
    assert (r.flipped["group_before"] != r.flipped["group_after"]).all()


def test_baseline_groups_are_tertiles(result):
    counts = result.baseline["group"].value_counts()
    assert set(counts.index) == {"low", "intermediate", "high"}
    assert counts.max() - counts.min() <= 2


def test_plot_has_two_panels(result, tmp_path):
    fig = plot_robustness(result)
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 5000


@pytest.mark.parametrize(
    ("unit", "times", "expected"),
    [
        ("months", [40.0] * 9 + [1.0], 36.0),  # 3 years followed
        ("days", [2000.0] * 5 + [10.0] * 5, 1096.0),
        ("months", [30.0] * 2 + [5.0] * 18, 24.0),  # 3 years: nobody followed; 2 years: 10%
        ("years", [10.0] * 10, 3.0),
    ],
)
def test_round_horizon(unit, times, expected):
    assert round_horizon(times, unit) == expected


def test_horizon_label():
    assert horizon_label(36, "months") == "3 years (36 months)"
    assert horizon_label(12, "months") == "1 year (12 months)"
    assert horizon_label(20, "months") == "20 months"


def test_default_perturbations_follow_the_modality_kinds():
    plan = default_perturbations(
        {"c": "clinical", "r": "text", "x": "longitudinal"}, {"noise": (0.2,)}
    )
    assert [(p.modality, p.kind, p.size) for p in plan] == [
        ("c", "noise", 0.2),
        ("r", "sentences", 1.0),
        ("r", "sentences", 2.0),
    ]
    assert Perturbation("g", "noise", 0.1).label == "g: noise 0.1 SD"
    assert "0.1 training SD" in Perturbation("g", "noise", 0.1).describe("genomics")


def test_png_images_are_perturbed_in_place_of_their_format(tmp_path):
    from PIL import Image

    from multimodal.robustness.perturbations import _perturbed_image

    rng = np.random.default_rng(0)
    src = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 200, size=(16, 16), dtype=np.uint8)).save(src)
    out = tmp_path / "out"
    out.mkdir()
    same = _perturbed_image(src, out, Perturbation("ct", "image_noise", 0.0), rng)
    assert np.array_equal(np.asarray(Image.open(same)), np.asarray(Image.open(src)))
    shifted = _perturbed_image(src, out, Perturbation("ct", "image_shift", 0.5), rng)
    assert np.asarray(Image.open(shifted)).mean() > np.asarray(Image.open(src)).mean()
    assert (
        _perturbed_image(tmp_path / "b.dcm", out, Perturbation("ct", "image_noise", 0.1), rng)
        is None
    )


def test_a_run_without_its_cohort_says_how_to_give_it(tiny_run, tmp_path):
    import shutil

    import yaml

    copy = tmp_path / "moved" / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
    raw = yaml.safe_load((copy / "config.yaml").read_text())
    raw["_meta"]["cohort_path"] = str(tmp_path / "nowhere")
    (copy / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match="pass cohort=PATH"):
        robustness(copy)


def test_out_of_fold_predictions_reproduce_the_runs(tiny_model, tiny_cohort, tiny_run):
    from multimodal.robustness import out_of_fold_predictions

    preds = pd.read_csv(tiny_run / "predictions.csv", dtype={"patient_id": str})
    times = json.loads((tiny_run / "metrics.json").read_text())["eval_times"]
    oof = out_of_fold_predictions(tiny_model, tiny_cohort, times).set_index("patient_id")
    val = preds[preds["split"] == "val"].set_index("patient_id").loc[oof.index]
    for t in times:
        np.testing.assert_allclose(oof[f"surv_{t:g}"], val[f"surv_{t:g}"], atol=1e-5)
    centre = preds[preds["split"] == "train"].groupby("fold")["risk"].mean()
    np.testing.assert_allclose(oof["risk"], val["risk"] - val["fold"].map(centre), atol=1e-5)
    assert (oof["fold"] == val["fold"]).all()
