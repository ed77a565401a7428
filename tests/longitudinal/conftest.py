"""Small longitudinal cohorts written as a user would: a manifest, a patient table, clinical
covariates and a long table of repeat measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml


def write_cohort(root: Path, n: int = 80, seed: int = 0, unit: str = "months") -> Path:
    """``n`` patients followed up to 60 months; visits every ~6 months; the marker's level and
    slope drive the hazard (the later, the more it tells). Returns the manifest path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"P{i:03d}" for i in range(n)]
    level = rng.normal(size=n)
    slope = rng.normal(scale=0.05, size=n)
    age = rng.integers(40, 80, n)
    # hazard rises with the marker's current value: simulate on a monthly grid
    time = np.full(n, 60.0)
    event = np.zeros(n, dtype=int)
    for m in range(60):
        hazard = 0.01 * np.exp(0.9 * (level + slope * m) + 0.02 * (age - 60))
        dies = (rng.uniform(size=n) < hazard) & (event == 0)
        time[dies] = m + rng.uniform(0.1, 0.9, dies.sum())
        event[dies] = 1
    censor = rng.uniform(20, 60, n)
    observed = np.minimum(time, censor)
    event = (event == 1) & (time <= censor)
    rows = []
    for i, pid in enumerate(ids):
        t = 0.0
        while t <= observed[i]:
            rows.append(
                (
                    pid,
                    round(t, 2),
                    "marker",
                    round(level[i] + slope[i] * t + rng.normal(scale=0.1), 4),
                )
            )
            if rng.uniform() < 0.7:
                rows.append((pid, round(t, 2), "noise", round(rng.normal(), 4)))
            t += rng.uniform(4, 8)
    pd.DataFrame({"patient_id": ids, "time": observed.round(2), "event": event.astype(int)}).to_csv(
        root / "patients.csv", index=False
    )
    pd.DataFrame({"patient_id": ids, "age": age, "sex": rng.choice(["F", "M"], n)}).to_csv(
        root / "clinical.csv", index=False
    )
    pd.DataFrame(rows, columns=["patient_id", "time", "variable", "value"]).to_csv(
        root / "labs.csv", index=False
    )
    manifest = {
        "version": 1,
        "name": "tiny-longitudinal",
        "patients": {"path": "patients.csv", "time_unit": "months"},
        "modalities": {
            "clinical": {"kind": "clinical", "path": "clinical.csv"},
            "labs": {"kind": "longitudinal", "path": "labs.csv", "time_unit": unit},
        },
    }
    (root / "cohort.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return root / "cohort.yaml"


@pytest.fixture(scope="session")
def tiny_cohort_path(tmp_path_factory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("longitudinal"))


TINY_CONFIG = {
    "endpoint": "os",
    "data": {
        "folds": 3,
        "fold_indices": [0],
        "landmark": {"times": [0, 6, 12, 18, 24], "horizon": 24},
    },
    "encoders": {"labs": {"name": "longitudinal_gru", "out_dim": 8, "options": {"hidden": 8}}},
    "fusion": {"name": "concat", "dim": 8},
    "members": {"clinical": True, "linear": ["labs"], "deep": True},
    "head": {"name": "cox"},
    "train": {"epochs": 3, "batch_size": 64, "patience": 2, "progress": False, "refit": False},
    "eval": {"bootstrap": 0, "n_times": 4},
}


@pytest.fixture(scope="session")
def tiny_run(tiny_cohort_path, tmp_path_factory):
    """A one-fold landmark run on the tiny cohort."""
    from multimodal import train

    out = tmp_path_factory.mktemp("longitudinal-run") / "run"
    return train(
        dict(TINY_CONFIG, data={**TINY_CONFIG["data"], "cohort": str(tiny_cohort_path)}), out=out
    )
