"""`multimodal train` under torchrun with 2 CPU processes (gloo backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_train_runs_under_torchrun_with_two_processes(tmp_path):
    from multimodal.data.synth import generate_cohort

    generate_cohort(tmp_path / "cohort", n_patients=60, seed=5, missing_rate=0.2, image_size=8)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "multimodal.cli",
        "train",
        "--config",
        str(ROOT / "configs/demo.yaml"),
        "--cohort",
        str(tmp_path / "cohort/cohort.yaml"),
        "--out",
        str(run),
        "--set",
        "data.modalities=[clinical,genomics]",
        "--set",
        "data.fold_indices=[0]",
        "--set",
        "data.folds=2",
        "--set",
        "train.epochs=2",
        "--set",
        "train.progress=false",
        "--set",
        "eval.bootstrap=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 ranks" in proc.stderr
    assert proc.stdout.count("validation C-index") == 1  # only rank 0 reports
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["c_index"] <= 1
