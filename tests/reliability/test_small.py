"""Small reliability fixes of issue #20.

- the demo finds its shipped config from any current directory; ``--config PATH`` still works;
- ``--no-compare`` makes no claim about single-modality models;
- unknown encoder, fusion or head names stop ``train`` (and the demo) before any data is read or
  any file is written, with a "did you mean";
- a report without punctuation is cut to bounded chunks (one warning naming the patient), while
  the sentences of ordinary reports stay exactly what they were.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from multimodal.config import load_config
from multimodal.demo import DemoSummary, default_demo_config
from multimodal.exceptions import ConfigError
from multimodal.training.config_checks import check_registry_names
from multimodal.training.preprocess import (
    MAX_REPORT_CHARS,
    MAX_REPORT_CHUNKS,
    MAX_SENTENCE_CHARS,
    PIPELINES,
    PreprocessContext,
    split_sentences,
)

ROOT = Path(__file__).resolve().parents[2]

#: overrides that make the demo config train in seconds (no text model, no image backbone)
FAST_DEMO = [
    "train.epochs=1",
    "train.refit=false",
    "train.progress=false",
    "data.folds=2",
    "data.modalities=[clinical,genomics]",
    "members.linear=[]",
    "eval.bootstrap=0",
]


def _sets(overrides: list[str]) -> list[str]:
    return [f"--set={o}" for o in overrides]


# ----------------------------------------------------------------------------- 1. demo config


def test_default_demo_config_is_the_shipped_file():
    path = default_demo_config()
    assert path.is_absolute() and path.is_file()
    assert path.read_text() == (ROOT / "configs" / "demo.yaml").read_text()


def test_demo_runs_outside_the_repository(tools, tmp_path, monkeypatch):
    """Run from a folder without configs/: the shipped demo config is found (no --config)."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))
    res = tools.cli("demo", "--out", "demo", "--n-patients", 50, "--no-compare", *_sets(FAST_DEMO))
    assert res.exit_code == 0, res.output
    assert not (work / "configs").exists()
    summary = json.loads((work / "demo" / "summary.json").read_text())
    assert [r["model"] for r in summary["rows"]] == ["fusion"]
    # 2. nothing was compared: no claim about single modalities, in the file or on the screen
    assert "fusion_beats_every_single_modality" not in summary
    assert "fusion_beats_every_single_modality" not in res.output
    assert summary["single_modality_models"] == "not trained"


def test_demo_explicit_config_is_used_and_checked_before_any_work(tools, tmp_path, monkeypatch):
    """``--config PATH`` is the config the demo runs; a typo in it stops the demo at once."""
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(default_demo_config().read_text())
    raw["fusion"]["name"] = "atention_gated"
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump(raw))
    res = tools.cli("demo", "--out", tmp_path / "demo", "--n-patients", 50, "--config", config)
    line = tools.assert_one_line_error(res, "fusion.name", "'atention_gated'")
    assert "Did you mean 'attention_gated'?" in line
    assert not (tmp_path / "demo").exists()  # nothing synthesised, nothing written


# ----------------------------------------------------------------------------- 2. headline


def _row(model: str, c: float) -> dict:
    return {"model": model, "modalities": [model], "c_index": c, "c_index_std": 0.0}


def test_headline_without_single_modality_models_makes_no_claim(tmp_path):
    summary = DemoSummary(tmp_path, rows=[_row("fusion", 0.7)], ground_truth_c_index=0.8)
    head = summary.headline()
    assert "fusion_beats_every_single_modality" not in head
    assert "best_single_modality" not in head and "best_single_c_index" not in head
    assert head["single_modality_models"] == "not trained"
    assert head["fusion_c_index"] == 0.7


@pytest.mark.parametrize(("single_c", "beats"), [(0.6, True), (0.75, False)])
def test_headline_with_single_modality_models_compares(tmp_path, single_c, beats):
    rows = [_row("fusion", 0.7), _row("only_clinical", single_c), _row("only_ct", 0.5)]
    head = DemoSummary(tmp_path, rows=rows).headline()
    assert head["fusion_beats_every_single_modality"] is beats
    assert head["best_single_modality"] == "only_clinical"
    assert head["best_single_c_index"] == single_c
    assert "single_modality_models" not in head


# ----------------------------------------------------------------------------- 3. registry names

#: (override, config key in the message, misspelt name, suggestion)
UNKNOWN_NAMES = [
    ("fusion.name=atention_gated", "fusion.name", "atention_gated", "attention_gated"),
    ("head.name=coxx", "head.name", "coxx", "cox"),
    (
        "encoders.clinical.name=clinical_mpl",
        "encoders.clinical.name",
        "clinical_mpl",
        "clinical_mlp",
    ),
    (
        "data.frozen_image_encoder={name: small_cn, out_dim: 4}",
        "data.frozen_image_encoder.name",
        "small_cn",
        "small_cnn",
    ),
]


@pytest.mark.parametrize(("override", "key", "name", "hint"), UNKNOWN_NAMES)
def test_train_refuses_unknown_names_before_loading_or_writing(
    tools, cohort_dir, tmp_path, monkeypatch, override, key, name, hint
):
    from multimodal.data.cohort import Cohort

    def no_load(*args, **kwargs):
        raise AssertionError("the cohort was loaded before the config's names were checked")

    monkeypatch.setattr(Cohort, "load", no_load)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"folds": 2, "image_size": 8},
                "encoders": {"clinical": {"name": "clinical_mlp", "out_dim": 4}},
                "train": {"epochs": 1, "progress": False},
                "eval": {"bootstrap": 0},
            }
        )
    )
    out = tmp_path / "run"
    res = tools.cli(
        "train", "--config", config, "--cohort", cohort_dir, "--out", out, "--set", override
    )
    line = tools.assert_one_line_error(res, key, f"{name!r}", f"Did you mean {hint!r}?")
    assert "Available:" in line
    assert not (out / "config.yaml").exists()


def test_check_registry_names_reports_every_unknown_name_at_once():
    cfg = load_config({"fusion": {"name": "concatt"}, "encoders": {"genomics": "snm"}})
    with pytest.raises(ConfigError) as err:
        check_registry_names(cfg)
    message = str(err.value)
    assert "encoders.genomics.name: unknown encoder 'snm'. Did you mean 'snn'?" in message
    assert "fusion.name: unknown fusion 'concatt'. Did you mean 'concat'?" in message


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "configs").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_configs_pass_the_name_check(path):
    check_registry_names(load_config(path))


# ----------------------------------------------------------------------------- 4. report chunks

_REFERENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def _reference_split(text: str, min_chars: int = 3) -> list[str]:
    """``split_sentences`` as it was before the limits (commit 41e597d)."""
    parts = [p.strip() for p in _REFERENCE_END.split(str(text))]
    return [p for p in parts if len(p) >= min_chars] or [str(text).strip()]


def _synthetic_reports(n: int = 1500) -> list[str]:
    """Reports as the synthetic cohort writes them: every finding, some with an addendum."""
    from multimodal.data.synth_text import make_addendum, make_report

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        examined = int(rng.integers(0, 30))
        text, _ = make_report(
            rng,
            grade=int(rng.integers(1, 4)),
            margin_positive=bool(rng.random() < 0.3),
            lvi=bool(rng.random() < 0.4),
            nodes_positive=int(rng.integers(0, examined + 1)),
            nodes_examined=examined,
        )
        out.append(text if i % 3 else text + "\n\n" + make_addendum(rng))
    return out


def test_sentences_of_synthetic_reports_are_unchanged():
    reports = _synthetic_reports()
    assert all(split_sentences(t) == _reference_split(t) for t in reports)


def test_sentences_of_the_synthetic_cohort_are_unchanged(cohort_dir):
    from multimodal.data.cohort import Cohort

    texts = Cohort.load(cohort_dir / "cohort.yaml").sources["report"].texts().dropna()
    assert len(texts) > 10
    assert all(split_sentences(t) == _reference_split(t) for t in texts)


def test_sentences_of_tcga_reports_are_unchanged(shared_data):
    n = 0
    for path in sorted((shared_data / "tcga").glob("*/reports*.csv")):
        frame = pd.read_csv(path)
        for column in [c for c in frame.columns if c.startswith("text")]:
            for text in frame[column].dropna().astype(str):
                assert split_sentences(text) == _reference_split(text), (path, text[:80])
                n += 1
    assert n > 1000


def _no_punctuation(n_chars: int) -> str:
    words = ("tumour", "grade", "margin", "lymph", "node", "negative", "carcinoma", "seen")
    rng = np.random.default_rng(0)
    text = " ".join(words[i] for i in rng.integers(len(words), size=n_chars // 5))
    return text[:n_chars]


def test_report_without_punctuation_is_cut_to_bounded_chunks():
    text = _no_punctuation(1_000_000)
    start = time.perf_counter()
    chunks = split_sentences(text)
    assert time.perf_counter() - start < 2.0  # ~0.05 s here; linear in the text's length
    assert 0 < len(chunks) <= MAX_REPORT_CHUNKS
    assert max(map(len, chunks)) <= MAX_SENTENCE_CHARS
    assert MAX_REPORT_CHARS - MAX_SENTENCE_CHARS < sum(map(len, chunks)) <= MAX_REPORT_CHARS
    cursor = 0
    for c in chunks:  # in order, verbatim, cut at whitespace (no word split in two)
        at = text.find(c, cursor)
        assert at >= cursor and (at == 0 or text[at - 1] == " ")
        cursor = at + len(c)
        assert cursor == len(text) or text[cursor] == " "


def test_long_sentence_without_spaces_and_many_tiny_sentences_are_bounded():
    chunks = split_sentences("x" * 5_000)
    assert chunks == ["x" * MAX_SENTENCE_CHARS] * 5
    assert len(split_sentences("ab.\n" * 100_000)) == MAX_REPORT_CHUNKS


class _Texts:
    kind = "text"

    def __init__(self, texts: dict[str, str]) -> None:
        self._series = pd.Series(texts, name="text")

    def texts(self) -> pd.Series:
        return self._series


class _CountingEmbedder:
    """2-d fake embeddings; records every text it is asked to embed (no model needed)."""

    dim = 2

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts):
        self.seen += list(texts)
        return np.array([[len(t), t.count("grade")] for t in texts], dtype=np.float32)

    def embed_chunks(self, texts):
        self.seen += list(texts)
        return [np.array([[len(t), t.count("grade")]], dtype=np.float32) for t in texts]


@pytest.mark.parametrize("chunking", ["sentences", "tokens"])
def test_cut_report_is_bounded_and_warned_once_naming_the_patient(caplog, chunking):
    ctx = PreprocessContext(text_chunking=chunking)
    embedder = _CountingEmbedder()
    ctx.memo["text-embedder:None:256"] = embedder
    pipeline = PIPELINES.get("text")(ctx, "text_mlp")
    normal = "Grade 3 carcinoma. Margins negative; nodes 0/12.\nADDENDUM: none"
    src = _Texts({"P-normal": normal, "P-huge": _no_punctuation(1_000_000), "P-2": "grade 1."})
    with caplog.at_level(logging.WARNING, logger="multimodal.training.pipelines_text"):
        pipeline.fit(src, ["P-normal", "P-huge", "P-2"])
        pipeline.transform(src, ["P-normal", "P-huge", "P-2"])
        pipeline.transform(src, ["P-huge"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "P-huge" in warnings[0] and "1,000,000 characters" in warnings[0]
    if chunking == "sentences":  # the ordinary report is embedded as exactly its sentences
        assert set(_reference_split(normal)) <= set(embedder.seen)
        assert max(map(len, embedder.seen)) <= MAX_SENTENCE_CHARS
        assert sum(map(len, embedder.seen)) <= MAX_REPORT_CHARS + len(normal) + len("grade 1.")
    else:  # one token-window text per report and call
        assert normal in embedder.seen
        assert max(map(len, embedder.seen)) <= MAX_REPORT_CHARS
