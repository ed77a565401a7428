"""The benchmark path (``multimodal benchmark``) on one fold of a real TCGA cohort, and its parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import multimodal
from multimodal.cli import app
from multimodal.evaluation.benchmark import bootstrap_mean_c, summary_markdown


def _fast() -> list[str]:
    return [
        "--set",
        "train.epochs=3",
        "--set",
        "train.progress=false",
        "--set",
        "eval.bootstrap=0",
        "--set",
        "data.genomics_max_features=50",
    ]


@pytest.mark.shared
def test_benchmark_cli_one_fold_of_blca(shared_data, tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(shared_data / "tcga" / "blca"), "--out", str(out)]
    args += ["--fold", "0", "--model", "mm_clinical_genomics", "--baselines", "clinical_cox,coxnet"]
    args += ["--bootstrap", "20", *_fast()]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    res = pd.read_csv(out / "results.csv")
    assert list(res.columns[:5]) == ["model", "fold", "c_index", "uno_c", "ibs"]
    assert set(res.model) == {"mm_clinical_genomics", "clinical_cox", "coxnet"}
    assert (res.fold == 0).all()
    # every model was scored on the same validation patients of the published fold 0
    fold0 = pd.read_csv(
        shared_data / "tcga" / "blca" / "splits" / "porpoise_mcat_5fold" / "fold_0.csv"
    )
    val_ids = set(fold0.patient_id[fold0.split == "val"].astype(str))
    preds = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str})
    for _, g in preds.groupby("model"):
        assert set(g.patient_id) == val_ids
    assert res.c_index.between(0.5, 0.9).all(), res  # real signal, not a degenerate score
    assert res.ibs.between(0.0, 0.35).all(), res
    summary = pd.read_csv(out / "summary.csv")
    ours = summary[summary.model == "mm_clinical_genomics"].iloc[0]
    assert ours.c_index_ci_low <= ours.c_index_mean <= ours.c_index_ci_high
    # the published MCAT numbers for BLCA sit beside ours
    assert summary.model.str.startswith("published: ").any()
    assert "| mm_clinical_genomics |" in (out / "summary.md").read_text()
    assert "mm_clinical_genomics" in result.output


def test_bootstrap_mean_c_brackets_the_mean_and_is_reproducible():
    rng = np.random.default_rng(0)
    frames = []
    for fold in range(3):
        risk = rng.normal(size=80)
        time = np.exp(-risk + rng.normal(scale=0.7, size=80))
        frames.append(
            pd.DataFrame({"fold": fold, "time": time, "event": rng.random(80) < 0.7, "risk": risk})
        )
    pred = pd.concat(frames)
    lo, hi = bootstrap_mean_c(pred, n_boot=100, seed=1)
    from multimodal.survival.metrics import harrell_c

    mean_c = np.mean([harrell_c(g.time, g.event, g.risk) for _, g in pred.groupby("fold")])
    assert lo < mean_c < hi
    assert 0.6 < lo and hi < 0.95
    assert (lo, hi) == bootstrap_mean_c(pred, n_boot=100, seed=1)
    assert np.isnan(bootstrap_mean_c(pred, n_boot=0)[0])


def test_summary_markdown_formats_rows():
    summary = pd.DataFrame(
        [
            {
                "model": "clinical_cox",
                "c_index_mean": 0.64,
                "c_index_std": 0.02,
                "c_index_ci_low": 0.61,
                "c_index_ci_high": 0.67,
                "uno_c_mean": 0.62,
                "uno_c_std": 0.03,
                "ibs_mean": 0.2,
                "ibs_std": 0.01,
            },
            {"model": "published: MCAT", "c_index_mean": 0.624, "c_index_std": 0.034},
        ]
    )
    md = summary_markdown(summary, "BLCA")
    assert "| clinical_cox | 0.640 ± 0.020 | 0.610–0.670 | 0.620 ± 0.030 | 0.200 ± 0.010 |" in md
    assert "| published: MCAT | 0.624 ± 0.034 |  |  |  |" in md


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("bench_cohort")
    generate_cohort(out, n_patients=90, seed=5, missing_rate=0.2, image_size=8, n_genes=40)
    return out / "cohort.yaml"


def test_benchmark_on_a_manifest_with_k_folds_uses_the_same_patients(tiny_manifest, tmp_path):
    from multimodal.evaluation.benchmark import run_benchmark

    res = run_benchmark(
        tiny_manifest,
        tmp_path / "bench",
        config={"encoders": {"genomics": {"name": "snn", "out_dim": 4}}, "fusion": {"dim": 4}},
        folds="2",
        # structured reports are optional: this cohort has none, so the variant runs without
        variants={"mm_clinical_genomics": ("clinical", "genomics", "report_structured")},
        baselines=("clinical_cox",),
        overrides=["train.epochs=2", "train.progress=false", "eval.bootstrap=0", "eval.n_times=4"],
        n_boot=10,
    )
    assert set(res.results.model) == {"mm_clinical_genomics", "clinical_cox"}
    assert sorted(res.results.fold.unique()) == [0, 1]
    val = res.predictions.groupby(["model", "fold"]).patient_id.apply(frozenset).unstack("model")
    assert (val["mm_clinical_genomics"] == val["clinical_cox"]).all()  # identical folds
    assert res.results[["c_index", "uno_c", "ibs"]].notna().all().all()
    run = tmp_path / "bench" / "runs" / "mm_clinical_genomics"
    assert (run / "metrics.json").is_file()
    assert multimodal.load_run(run).config.data.modalities == ["clinical", "genomics"]


def test_the_text_variant_uses_every_report_a_tcga_cohort_has():
    # "ours" of bench/tcga_accuracy.py: BLCA's structured reports too, where the cohort has them
    from multimodal.evaluation.benchmark import DEFAULT_VARIANTS, variant_modalities

    text = DEFAULT_VARIANTS["mm_clinical_genomics_text"]
    blca = ["clinical", "genomics", "report", "report_structured"]
    assert variant_modalities(text, blca) == blca
    paad = ["clinical", "genomics", "report"]
    assert variant_modalities(text, paad) == paad
    assert variant_modalities(text, ["clinical", "genomics"]) == ["clinical", "genomics", "report"]


def test_benchmark_refuses_unknown_folds(tiny_manifest, tmp_path):
    from multimodal.evaluation.benchmark import run_benchmark
    from multimodal.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"fold\(s\) \[7\] do not exist"):
        run_benchmark(tiny_manifest, tmp_path, folds="2", fold_indices=[7], baselines=())
