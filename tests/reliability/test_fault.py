"""Fault test: `multimodal train` killed (SIGKILL) at random epochs three times, then run to the
end, writes exactly the files of an uninterrupted run (issue #20)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

CONFIG = {
    "data": {
        "folds": 2,
        "fold_indices": [0],
        "modalities": ["clinical", "genomics"],
        "genomics_max_features": 20,
    },
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "genomics": {"name": "snn", "out_dim": 4},
    },
    "fusion": {"name": "concat", "dim": 4},
    "train": {
        "epochs": 40,
        "batch_size": 16,
        "patience": 40,
        "progress": False,
        "checkpoint_every": 1,  # kills land between saves one epoch apart
    },
    "eval": {"n_times": 3, "bootstrap": 0},
}

CLI = [sys.executable, "-m", "multimodal.cli"]


def _train(config: Path, cohort: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*CLI, "train", "-c", str(config), "--cohort", str(cohort), "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _epochs_done(out: Path) -> int:
    """Epochs in the newest checkpoint (0 when there is none yet)."""
    from safetensors import safe_open

    done = 0
    for path in (out / "checkpoints").glob("*.safetensors"):
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["training_state"])
            done += int(meta["epoch"])  # the refit's epochs count after the first fit's
        except Exception:  # being replaced right now
            continue
    return done


def _files(out: Path) -> dict[str, bytes]:
    keep = ("predictions.csv", "history.csv", "weights.safetensors")
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.name in keep}


@pytest.mark.slow
def test_killed_three_times_equals_uninterrupted(tmp_path):
    from multimodal.data.synth import generate_cohort

    generate_cohort(tmp_path / "cohort", n_patients=60, seed=4, image_size=8)
    cohort = tmp_path / "cohort" / "cohort.yaml"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    reference = tmp_path / "reference"
    assert _train(config, cohort, reference).wait(timeout=600) == 0

    out = tmp_path / "killed"
    rng = np.random.default_rng(20)
    kills = [0]
    for _ in range(3):
        # a random epoch after the last kill (each start must get past the epoch it resumed from)
        target = kills[-1] + int(rng.integers(2, 12))
        proc = _train(config, cohort, out)
        deadline = time.time() + 300
        while proc.poll() is None and _epochs_done(out) < target and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(_epochs_done(out))
    kills = kills[1:]
    final = _train(config, cohort, out)
    assert final.wait(timeout=600) == 0, final.stderr.read().decode()[-2000:]
    assert kills == sorted(set(kills)) and kills[0] > 0, kills  # three kills, each later
    ref, got = _files(reference), _files(out)
    assert set(ref) == set(got) and len(ref) >= 3
    for name in ref:
        assert got[name] == ref[name], f"{name} differs after three kills at epochs {kills}"
