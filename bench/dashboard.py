"""Dashboard timings: the cohort view on 10,000 patients and the patient page on the demo run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/dashboard.py [--run runs/demo/fusion] [--n 10000]

Pages are rendered by ``streamlit.testing`` AppTest (the same script the browser gets, without
the network). The 10,000-patient run is synthetic: config, metrics and a predictions.csv with 5
folds (50,000 rows); the cohort view needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "dashboard.py")


def synthetic_run(folder: Path, n: int, folds: int = 5, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    run = RunFolder(folder)
    run.write_config({"endpoint": "os", "_meta": {"modalities": ["clinical"]}})
    x = rng.normal(size=n)
    time_ = rng.exponential(30 * np.exp(-0.8 * x))
    event = rng.random(n) < 0.65
    times = [3.0, 6.0, 12.0, 24.0, 36.0, 60.0]
    fold_of = np.arange(n) % folds
    parts = []
    for k in range(folds):
        frame = pd.DataFrame(
            {
                "patient_id": [f"P{i:06d}" for i in range(n)],
                "time": time_.round(2),
                "event": event.astype(int),
                "risk": x + rng.normal(scale=0.5, size=n),
            }
        )
        for t in times:
            frame[f"surv_{t:g}"] = np.exp(-t / 30 * np.exp(0.8 * frame["risk"]))
        frame["fold"] = k
        frame["split"] = np.where(fold_of == k, "val", "train")
        parts.append(frame)
    run.write_predictions(pd.concat(parts, ignore_index=True))
    metrics = {
        "endpoint": "os",
        "c_index": 0.7,
        "folds": [{"fold": k, "c_index": 0.7, "ibs": 0.18} for k in range(folds)],
    }
    run.write_metrics(metrics)
    return folder


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    from streamlit.testing.v1 import AppTest

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "demo" / "fusion")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument(
        "--patients",
        nargs="*",
        default=["SYN-0003", "SYN-0010", "SYN-0042", "SYN-0101", "SYN-0250"],
    )
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        big = synthetic_run(Path(tmp) / "big", args.n)
        os.environ["MULTIMODAL_DASHBOARD_RUN"] = str(big)
        at = AppTest.from_file(APP, default_timeout=600)
        results["cohort_first_render_s"], at = timed(at.run)
        assert not at.exception, at.exception
        results["cohort_rerender_s"], at = timed(at.run)
        results["cohort_change_groups_s"], at = timed(
            lambda: at.selectbox(key="n_groups").set_value(4).run()
        )
        results["cohort_patients"] = at.metric[0].value

    os.environ["MULTIMODAL_DASHBOARD_RUN"] = str(args.run)
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    results["patient_first_render_s"], at = timed(
        lambda: at.sidebar.radio(key="view").set_value("Patient").run()
    )
    per = []
    for pid in args.patients:
        dt, at = timed(lambda pid=pid, at=at: at.selectbox(key="patient_id").set_value(pid).run())
        assert not at.exception, at.exception
        per.append(round(dt, 2))
    results["patient_switch_s"] = per
    dt, at = timed(lambda: at.selectbox(key="patient_id").set_value(args.patients[0]).run())
    results["patient_revisit_s"] = round(dt, 2)
    print(
        json.dumps(
            {k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}, indent=2
        )
    )


if __name__ == "__main__":
    main()
