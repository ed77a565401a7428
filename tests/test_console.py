"""A plain command line: progress bars only on a terminal, each warning once per run, no nan.

The last test runs ``multimodal demo`` as a user running it under ``nohup`` or in CI would: a
process whose standard output and error go to a file.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from multimodal import console
from multimodal.training.combine import members_summary
from multimodal.training.loop import _figures


# --------------------------------------------------------------------------- progress
def test_plain_progress_writes_lines_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="multimodal.progress")
    with console.PlainProgress(4, "fold 2", unit="epoch", interval=0) as bar:
        for loss in (2.5, 2.4, 2.3):
            bar.set_postfix({"loss": f"{loss:.2f}", "hold-out C": float("nan"), "best": "-inf"})
            bar.update(1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("fold 2: 1/4 epochs, loss 2.50, ") and "left" in lines[0]
    assert lines[-1].startswith("fold 2: done, 3/4 epochs, loss 2.30, ")
    assert len(lines) == 4  # one per update, one at the end
    assert not any(re.search(r"\bnan\b|inf\b|\r", line) for line in lines)


def test_plain_progress_waits_for_its_interval(caplog):
    caplog.set_level(logging.INFO, logger="multimodal.progress")
    bar = console.PlainProgress(100, "text embeddings", unit="text", interval=3600)
    for _ in range(100):
        bar.update(1)
    bar.close()
    bar.close()  # closing twice writes nothing more
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["text embeddings: done"]


def test_progress_is_a_bar_only_on_a_terminal(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setattr(console, "is_tty", lambda stream=None: False)
    assert isinstance(console.progress(3, "x"), console.PlainProgress)
    monkeypatch.setattr(console, "is_tty", lambda stream=None: True)
    bar = console.progress(3, "x", unit="epoch")
    try:
        assert isinstance(bar, tqdm)
    finally:
        bar.close()
    silent = console.progress(3, "x", enabled=False)
    silent.update(1)
    silent.set_postfix(loss="1")
    silent.close()


def test_is_tty():
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert not console.is_tty(Stream(False)) and not console.is_tty(object())
    assert console.is_tty(Stream(True)) is (os.environ.get("TERM") != "dumb")


def test_epoch_figures_leave_out_what_does_not_exist():
    assert _figures(2.5, 0.71, 0.72) == {"loss": "2.5000", "hold-out C": "0.7100", "best": "0.7200"}
    assert _figures(2.5, math.nan, -math.inf) == {"loss": "2.5000"}  # a refit: no hold-out


# --------------------------------------------------------------------------- warnings once
def test_warn_once_per_run_and_nested_runs(caplog):
    log = logging.getLogger("multimodal.test_console")
    caplog.set_level(logging.INFO, logger=log.name)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records]

    console.start_run()
    assert console.warn_once(log, "encoder for %r unused", "ct")
    assert not console.warn_once(log, "encoder for %r unused", "ct")
    console.warn_once(log, "first of its kind (%s)", "a", key="kind")
    console.warn_once(log, "first of its kind (%s)", "b", key="kind")  # same key: not again
    assert said() == ["encoder for 'ct' unused", "first of its kind (a)"]
    console.start_run()  # a new run says it again
    console.warn_once(log, "encoder for %r unused", "ct")
    assert said().count("encoder for 'ct' unused") == 2
    with console.run_scope():  # the demo: one scope over several trainings
        for _ in range(3):
            console.start_run()
            console.warn_once(log, "said once in the scope")
    assert said().count("said once in the scope") == 1
    console.reset_once()


# --------------------------------------------------------------------------- members summary
def test_members_summary_in_words():
    stacked = [
        {"combine": "stacked", "penalties": {"clinical": 1, "genomics": 0.1, "report": 3},
         "weights": {"genomics": [0.5], "report": [0.1]}},
        {"combine": "stacked", "penalties": {"clinical": 1, "genomics": 0.3, "report": 3},
         "weights": {"genomics": [0.7], "report": [0.0]}},
    ]  # fmt: skip
    assert members_summary(stacked, [False, True]) == (
        "Members kept (mean weight over 2 folds; 1 = as fitted alone, 0 = ignored): clinical 1.00, "
        "genomics 0.60, report 0.05; deep residual kept in 1 of 2 folds"
    )
    joint = [
        {"combine": "joint", "penalties": {"clinical": 1, "genomics": 3.0}, "weights": {}},
        {"combine": "joint", "penalties": {"clinical": 1, "genomics": 10000.0}, "weights": {}},
        None,
    ]
    assert members_summary(joint, None, off_penalty=10000.0) == (
        "Members kept (folds where each counts): clinical in 2 of 3, genomics in 1 of 3; "
        "no deep residual"
    )
    assert "deep model alone" in members_summary([None, None], [True, True])


# --------------------------------------------------------------------------- the command line
_TOKEN = re.compile(r"(?<![\w.])[-+]?(nan|inf)(?!\w)", re.IGNORECASE)


@pytest.mark.slow  # five trainings and the embeddings: about 80 s on a busy 2-core machine
def test_demo_output_to_a_file_is_plain(tmp_path):
    """``multimodal demo`` (fusion + four single-modality models) with its output in a file."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MULTIMODAL_CACHE": str(tmp_path / "cache"),  # fresh: the embeddings are computed
        "MULTIMODAL_PROGRESS_INTERVAL": "0",  # a line per update, to check every one of them
    }
    env.pop("TERM", None)
    overrides = ["train.epochs=2", "data.folds=2", "data.image_size=8", "eval.bootstrap=0"]
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "multimodal.cli", "demo", "--out", str(tmp_path / "demo")]
            + ["--n-patients", "50"]
            + [f"--set={o}" for o in overrides],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=env,
            timeout=900,
        )
    text = log_path.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "\r" not in text
    assert not _TOKEN.search(text), _TOKEN.search(text).group(0)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # each warning once for the whole demo (it was printed once per unused encoder and model)
    assert sum("encoders configured for modalities" in line for line in lines) == 1
    assert not any("is configured but the modality is not used" in line for line in lines)
    assert not any(line.startswith("stacked members") for line in lines)
    repeated = [line for line, n in Counter(lines).items() if n > 1 and "warning" in line.lower()]
    assert not repeated
    # one members summary per model trained, the fusion's naming its four members
    summaries = [line for line in lines if line.startswith("Members kept")]
    assert len(summaries) == 5
    assert all(m in summaries[0] for m in ("clinical", "genomics", "report", "ct"))
    # progress of the embeddings, with an estimate of the time left, and of the epochs
    assert any(line.startswith("text embeddings: done, ") for line in lines)
    assert any(line.startswith("image embeddings: done, ") for line in lines)
    assert any(re.match(r"text embeddings: \d+/\d+ texts, .* left$", line) for line in lines)
    assert any(re.match(r"fold 0: 1/2 epochs, loss \d", line) for line in lines)
