"""Baselines on a real Cohort and the same Fold objects the deep models use."""

from __future__ import annotations

import numpy as np

from multimodal.data.cohort import Cohort
from multimodal.evaluation.baselines import run_baselines_on_cohort


def test_baselines_on_the_tcga_blca_cohort_with_published_folds(shared_data):
    cohort = Cohort.from_tcga(shared_data / "tcga" / "blca")
    folds = cohort.folds(name="porpoise_mcat_5fold")[:1]
    res = run_baselines_on_cohort(cohort, folds, models=("clinical_cox", "coxnet"))
    assert set(res.model) == {"clinical_cox", "coxnet"}
    assert (res.fold == folds[0].index).all()
    assert res.c_index.between(0.5, 0.85).all()
    assert np.isfinite(res.ibs).all()


def test_baselines_on_a_synthetic_cohort(tmp_path):
    from multimodal.data.synth import generate_cohort

    generate_cohort(tmp_path, n_patients=150, seed=2, with_images=False)
    cohort = Cohort.load(tmp_path / "cohort.yaml")
    res = run_baselines_on_cohort(cohort, cohort.folds(k=3, seed=0)[:1], models=("clinical_cox",))
    assert len(res) == 1 and 0.5 < res.c_index.iloc[0] < 1
