"""Fold summaries, docs section writing of the benchmark script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multimodal.evaluation.compare import cindex_by_group, summarize_folds

ROOT = Path(__file__).resolve().parents[2]


def test_summarize_uses_population_std():
    res = pd.DataFrame(
        {"model": ["a"] * 5, "c_index": [0.515172, 0.553163, 0.551396, 0.554276, 0.529289]}
    )
    out = summarize_folds(res, metrics=("c_index",))
    # the published SNN BLCA row: 0.540659 ± 0.015722 (numpy std, ddof=0)
    assert out.loc["a", "c_index_mean"] == pytest.approx(0.540659, abs=1e-6)
    assert out.loc["a", "c_index_std"] == pytest.approx(0.015722, abs=1e-6)


def test_cindex_by_group_checks_columns():
    df = pd.DataFrame(
        {
            "model": ["a"] * 4,
            "fold": 0,
            "time": [1, 2, 3, 4],
            "event": [1, 1, 0, 1],
            "risk": [4, 3, 2, 1],
        }
    )
    assert cindex_by_group(df).c_index.iloc[0] == 1.0
    with pytest.raises(ValueError, match="lacks columns"):
        cindex_by_group(df.drop(columns="risk"))


def test_bench_section_replaced_in_place(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as `python bench/<script>.py` does
    spec = importlib.util.spec_from_file_location(
        "bench_baselines", ROOT / "bench" / "baselines_tcga.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other section\n\nkeep me\n")
    mod.write_section(doc, mod.SECTION + "\n\nfirst\n")
    mod.write_section(doc, mod.SECTION + "\n\nsecond\n")
    text = doc.read_text()
    assert text.count(mod.SECTION) == 1 and "second" in text and "first" not in text
    assert "keep me" in text and np.char.startswith(text, "# Benchmarks")
