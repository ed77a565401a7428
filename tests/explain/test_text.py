"""Sentence attributions: spans map back to the report; leave-one-sentence-out is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multimodal.explain.text import sentence_spans

#: words of the synthetic reports' prognostic findings (multimodal.data.synth_text)
FACT_WORDS = "grade|differentiat|margin|lymphovascular|LVI|lymph node|nodal|G[123]|emboli|nodes"


def test_sentence_spans_index_the_original_text():
    text = "GROSS: Received fresh. Margins: uninvolved.\n\nLVI: identified; nodes 2/10."
    spans = sentence_spans(text)
    assert [s for s, _, _ in spans] == [
        "GROSS: Received fresh.",
        "Margins: uninvolved.",
        "LVI: identified;",
        "nodes 2/10.",
    ]
    for sentence, start, end in spans:
        assert text[start:end] == sentence


def test_text_spans_match_the_cohort_reports(smoke_explanation, smoke_cohort):
    spans = smoke_explanation.text_spans
    texts = smoke_cohort.sources["report"].texts()
    assert len(spans) and spans["modality"].eq("report").all()
    for row in spans.itertuples():
        assert texts[row.patient_id][row.start : row.end] == row.sentence
    has = smoke_cohort.availability()["report"]
    assert set(spans["patient_id"]) == set(has.index[has])


def _risk_without_sentence(model, cohort, pid: str, index: int) -> tuple[float, float]:
    """Predicted risk of the patient with the report, and with sentence ``index`` left out."""
    one = cohort.subset([pid])
    full = model.predict_risk(one)[pid]
    source = one.sources["report"]
    text = source.texts()[pid]
    kept = [s for j, (s, _, _) in enumerate(sentence_spans(text)) if j != index]
    source.table = pd.DataFrame({"patient_id": [pid], "text": ["\n".join(kept)]})
    source.__dict__.pop("_texts", None)  # texts() caches the joined reports
    return full, model.predict_risk(one)[pid]


def test_leave_one_sentence_out_equals_predicting_the_shortened_report(
    smoke_explanation, smoke_model, smoke_cohort
):
    spans = smoke_explanation.text_spans
    pid = spans["patient_id"].iloc[0]
    row = spans[spans["patient_id"] == pid].iloc[1]
    full, shortened = _risk_without_sentence(smoke_model, smoke_cohort, pid, row.sentence_index)
    assert row.attribution == pytest.approx(full - shortened, abs=1e-5)


def test_the_reports_linear_member_reads_the_shortened_report(linear_model, linear_cohort):
    """configs/demo.yaml's ridge Cox term on the report embedding is the report's only share: a
    sentence's attribution is what the term loses without it (float32 tolerance)."""
    assert "report" in linear_model.folds[0].model.members
    has = linear_cohort.availability()["report"]
    pid = str(has.index[has][0])
    spans = linear_model.explain(linear_cohort, patient_ids=[pid], methods=["text"]).text_spans
    assert len(spans) >= 2 and spans["attribution"].abs().max() > 1e-4
    for row in spans.itertuples():
        full, shortened = _risk_without_sentence(
            linear_model, linear_cohort, pid, row.sentence_index
        )
        assert row.attribution == pytest.approx(full - shortened, abs=1e-5)


@pytest.mark.slow
def test_trained_text_model_highlights_the_finding_sentences(tmp_path):
    """Outcomes driven by the report findings only: sentences stating them outrank fillers."""
    import multimodal
    from multimodal.data.synth import generate_cohort

    res = generate_cohort(
        tmp_path / "c", n_patients=300, seed=0, missing_rate=0.0, with_images=False, n_genes=30
    )
    z = res.ground_truth["risk_text"].to_numpy()
    z = (z - z.mean()) / z.std()
    patients = pd.read_csv(tmp_path / "c" / "patients.csv")
    rng = np.random.default_rng(0)
    patients["time"] = np.round(rng.exponential(12.0 * np.exp(-2.0 * z)), 2) + 0.01
    patients["event"] = 1
    patients.to_csv(tmp_path / "c" / "patients.csv", index=False)
    cohort = multimodal.Cohort.load(tmp_path / "c" / "cohort.yaml")
    config = {
        "data": {"folds": 2, "modalities": ["report"], "early_stopping_fraction": 0.0},
        "encoders": {"report": {"name": "text_mlp", "out_dim": 8, "options": {"dropout": 0.3}}},
        "fusion": {"name": "attention_gated", "dim": 8, "modality_dropout": 0.0},
        "train": {
            "epochs": 20,
            "batch_size": 64,
            "lr": 0.003,
            "weight_decay": 0.01,
            "refit": False,
            "progress": False,
        },
        "eval": {"n_times": 4, "bootstrap": 0},
    }
    multimodal.train(config, cohort=cohort, out=tmp_path / "run")
    ex = multimodal.load_run(tmp_path / "run").explain(cohort, methods=["text"])
    spans = ex.text_spans.assign(a=lambda d: d["attribution"].abs())
    fact = spans["sentence"].str.contains(FACT_WORDS, case=False, regex=True)
    assert spans.loc[fact, "a"].mean() > 1.3 * spans.loc[~fact, "a"].mean()
    top = spans.sort_values("a").groupby("patient_id").tail(1)
    top_is_fact = top["sentence"].str.contains(FACT_WORDS, case=False, regex=True).mean()
    assert top_is_fact > fact.mean() + 0.1  # well above the share of finding sentences
