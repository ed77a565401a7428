"""Run-folder loading errors and predicted median survival."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.exceptions import RunFolderError
from multimodal.models.run import load_run, median_survival


def test_load_run_on_a_folder_without_config(tmp_path):
    with pytest.raises(RunFolderError, match=r"config\.yaml is missing"):
        load_run(tmp_path)


def test_load_run_without_finished_folds(tmp_path):
    (tmp_path / "config.yaml").write_text("endpoint: os\n")
    with pytest.raises(RunFolderError, match="no finished fold"):
        load_run(tmp_path)


def test_median_survival_interpolates_and_reports_nan_when_never_reached():
    times = np.array([0.0, 10.0, 20.0, 30.0])
    surv = np.array([[1.0, 0.8, 0.4, 0.2], [1.0, 0.9, 0.8, 0.7], [0.5, 0.4, 0.3, 0.2]])
    med = median_survival(surv, times)
    assert med[0] == pytest.approx(17.5)
    assert np.isnan(med[1])
    assert med[2] == 0.0
