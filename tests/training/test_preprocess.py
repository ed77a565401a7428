"""Preprocessing is fitted on training patients only; text is chunked by sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multimodal.training.preprocess import PIPELINES, PreprocessContext, split_sentences


class _TextSource:
    kind = "text"

    def __init__(self, texts: dict[str, str]):
        self._t = pd.Series(texts, name="text")

    def texts(self) -> pd.Series:
        return self._t


class _FakeEmbedder:
    """Deterministic 4-d 'embedding': counts of a few words (no model needed)."""

    dim = 4
    calls = 0

    def embed(self, texts):
        _FakeEmbedder.calls += 1
        words = ("grade", "margin", "nodes", "negative")
        return np.array([[t.lower().count(w) for w in words] for t in texts], dtype=np.float32)


@pytest.fixture
def pipeline():
    ctx = PreprocessContext()
    ctx.memo["text-embedder:None:256"] = _FakeEmbedder()
    return PIPELINES.get("text")(ctx, "text_mlp")


def test_split_sentences():
    text = "DIAGNOSIS: grade 3. Margins negative; nodes 0/12.\nADDENDUM: none"
    assert split_sentences(text) == [
        "DIAGNOSIS: grade 3.",
        "Margins negative;",
        "nodes 0/12.",
        "ADDENDUM: none",
    ]
    assert split_sentences("  ") == [""]


def test_text_standardisation_uses_training_patients_only(pipeline):
    src = _TextSource(
        {
            "a": "grade 3. margin positive.",
            "b": "grade 1.",
            "c": "nodes 2 positive. grade 2.",
            "val": "grade grade grade grade. margin margin.",
        }
    )
    pipeline.fit(src, ["a", "b", "c"])
    store = pipeline.transform(src, ["a", "b", "c", "val"])
    x = store.values.numpy()
    # training rows are standardised to mean 0 per dimension; the validation row is not used
    assert np.allclose(x[:3].mean(0), 0, atol=1e-6)
    assert not np.allclose(x[3], 0)
    state = pipeline.state()
    assert len(state["mean"]) == 4 and state["chunking"] == "sentences"


def test_empty_report_counts_as_missing(pipeline):
    src = _TextSource({"a": "grade 3.", "b": "   ", "c": "grade 1."})
    pipeline.fit(src, ["a", "b", "c"])
    store = pipeline.transform(src, ["a", "b", "c", "unknown"])
    assert store.present.tolist() == [True, False, True, False]


def test_sentences_are_embedded_once(pipeline):
    src = _TextSource({"a": "grade 3. margin negative.", "b": "grade 3. nodes 1."})
    before = _FakeEmbedder.calls
    pipeline.fit(src, ["a", "b"])
    pipeline.transform(src, ["a", "b"])
    assert _FakeEmbedder.calls - before == 1  # shared sentences cached within the run
