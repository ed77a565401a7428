"""Reference survival datasets shared by the metric tests: package datasets (sksurv, lifelines)
with a risk score from a quick ridge Cox fit."""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def reference_datasets() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Real package datasets with a risk score from a quick Cox fit (sksurv, ridge)."""
    from lifelines.datasets import load_rossi
    from sksurv.datasets import load_gbsg2, load_veterans_lung_cancer, load_whas500
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.preprocessing import OneHotEncoder
    from sksurv.util import Surv

    out = {}
    for name, loader in [
        ("whas500", load_whas500),
        ("gbsg2", load_gbsg2),
        ("veterans", load_veterans_lung_cancer),
    ]:
        x, y = loader()
        x = OneHotEncoder().fit_transform(x).astype(float)
        ev, tm = y.dtype.names
        risk = CoxPHSurvivalAnalysis(alpha=0.1).fit(x, y).predict(x)
        out[name] = (y[tm].astype(float), y[ev].astype(bool), risk)
    r = load_rossi()
    y = Surv.from_arrays(r.arrest.astype(bool), r.week.astype(float))
    x = r.drop(columns=["week", "arrest"]).to_numpy(float)
    out["rossi"] = (
        r.week.to_numpy(float),
        r.arrest.to_numpy(bool),
        CoxPHSurvivalAnalysis().fit(x, y).predict(x),
    )
    return out
