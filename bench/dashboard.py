"""Dashboard timings: the cohort view on 10,000 patients and the patient page on the demo run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/dashboard.py [--run runs/demo/fusion] [--n 10000]
        [--wait SECONDS] [--direct]

Pages are rendered by ``streamlit.testing`` AppTest (the same script the browser gets, without
the network); each figure is one script run, start to end. The 10,000-patient run is synthetic:
config, metrics and a predictions.csv with 5 folds (50,000 rows); the cohort view needs nothing
else. Run it in a fresh process per setting (everything is cached per process):

- default: the cohort view of the demo run, then the patient page at once;
- ``--wait 20``: the patient page after 20 s on the cohort view (the fold models load in the
  background once a page is drawn);
- ``--direct``: the patient page as the first page of the session (a ``?patient=`` link), cold.

The synthetic run is written by a child process, so that the first render counts every import
the page makes (torch included) -- as the first page after ``multimodal dashboard`` starts, whose
server has imported streamlit already.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "dashboard.py")


def synthetic_run(folder: Path, n: int, folds: int = 5, seed: int = 0) -> Path:
    import numpy as np
    import pandas as pd

    from multimodal.runfolder import RunFolder

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
    ap.add_argument("--wait", type=float, default=0.0, help="seconds on the cohort view first")
    ap.add_argument("--direct", action="store_true", help="open the patient page first, cold")
    args = ap.parse_args()
    results: dict[str, object] = {"load_average": round(os.getloadavg()[0], 2)}
    start = time.perf_counter()
    if not args.direct:
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big"
            code = f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import dashboard; "
            code += f"dashboard.synthetic_run(__import__('pathlib').Path({str(big)!r}), {args.n})"
            subprocess.run([sys.executable, "-c", code], check=True)
            assert "torch" not in sys.modules  # the first render below pays for every import
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
    if args.direct:
        at.session_state["view"] = "Patient"
        at.session_state["patient_id"] = args.patients[0]
        results["patient_direct_first_render_s"], at = timed(at.run)
    else:
        results["demo_cohort_first_render_s"], at = timed(at.run)
        shown = time.perf_counter()
        if args.wait:
            while any(t.name.startswith("mm-dashboard-warmup") for t in threading.enumerate()):
                time.sleep(0.05)
            results["background_loading_s"] = time.perf_counter() - shown
        time.sleep(max(0.0, args.wait - (time.perf_counter() - shown)))
        key = "patient_first_render_s" if not args.wait else f"patient_after_{args.wait:g}s_s"
        results[key], at = timed(lambda: at.sidebar.radio(key="view").set_value("Patient").run())
    assert not at.exception, at.exception
    per = []
    for pid in args.patients[1:] if args.direct else args.patients:
        dt, at = timed(lambda pid=pid, at=at: at.selectbox(key="patient_id").set_value(pid).run())
        assert not at.exception, at.exception
        per.append(round(dt, 2))
    results["patient_switch_s"] = per
    dt, at = timed(lambda: at.selectbox(key="patient_id").set_value(args.patients[0]).run())
    results["patient_revisit_s"] = round(dt, 2)
    results["wall_s"] = time.perf_counter() - start
    print(
        json.dumps(
            {k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}, indent=2
        )
    )


if __name__ == "__main__":
    main()
