"""The words of a report sentence (``text_spans.terms``, :func:`term_attributions`): lexical
text features only, a term's value is the change in risk when the report loses the sentence's
occurrences of it, and a negated finding shows as its ``neg_`` term."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multimodal
from multimodal.explain._forward import fold_inputs
from multimodal.explain.explanation import (
    MAX_SHOWN_TERMS,
    Explanation,
    format_terms,
    parse_terms,
)
from multimodal.explain.text import sentence_attributions, term_attributions
from tests.training.test_text_lexical import CONFIG, _FakeEmbedder

#: clinical covariates + the report's lexical features as linear members, no deep residual: the
#: model is linear in the report's term columns
LINEAR_LEXICAL = {
    **CONFIG,
    "members": {**CONFIG["members"], "deep": False},
    "train": {**CONFIG["train"], "epochs": 1},
}


@pytest.fixture(scope="module")
def lexical_linear(tmp_path_factory):
    """A synthetic cohort and a two-fold lexical run of linear members."""
    from multimodal.data.synth import generate_cohort

    root = tmp_path_factory.mktemp("text_terms")
    generate_cohort(
        root / "cohort", n_patients=80, seed=5, missing_rate=0.0, with_images=False, n_genes=20
    )
    cohort = multimodal.Cohort.load(root / "cohort" / "cohort.yaml")
    multimodal.train(LINEAR_LEXICAL, cohort=cohort, out=root / "run")
    return root / "run", cohort


def _with_report(cohort, pid: str, text: str):
    """A one-patient cohort whose report is ``text``."""
    one = cohort.subset([pid])
    source = one.sources["report"]
    source.table = pd.DataFrame({"patient_id": [pid], "text": [text]})
    source.__dict__.pop("_texts", None)  # texts() caches the joined reports
    return one


def test_format_and_parse_terms():
    values = [("grade", 0.0812), ("neg_lymphovascular neg_invasion", -0.2134), ("ink", 1e-4)]
    values += [(f"w{i}", 0.01 * (i + 1)) for i in range(6)]
    cell = format_terms(values)
    assert cell.startswith("neg_lymphovascular neg_invasion -0.213; grade +0.081; w5 +0.060")
    parsed = parse_terms(cell)
    assert len(parsed) == MAX_SHOWN_TERMS and "ink" not in dict(parsed)
    assert parsed[0] == ("neg_lymphovascular neg_invasion", pytest.approx(-0.213))
    assert format_terms([("ink", 1e-4)]) == "" and parse_terms(float("nan")) == []


def test_a_sentences_terms_sum_to_its_attribution(lexical_linear):
    """One fold model (no shrinkage), linear in the term columns: the terms of a sentence sum to
    the sentence's attribution, and the ``terms`` cell lists the largest of them."""
    run, cohort = lexical_linear
    model = multimodal.load_run(run)
    has = cohort.availability()["report"]
    ids = [str(p) for p in has.index[has][:6]]
    folds = fold_inputs(model, cohort, ids)[:1]
    spans = sentence_attributions(folds, cohort)
    terms = term_attributions(folds, cohort)
    assert spans["counterfactual"].eq("sentence removed").all()
    assert terms["attribution"].to_numpy() == pytest.approx(terms["attribution_raw"].to_numpy())
    assert terms["term"].str.startswith("neg_").any()
    assert spans["attribution"].abs().max() > 1e-3
    total = terms.groupby(["patient_id", "sentence_index"])["attribution"].sum()
    n_sentences = spans.groupby("patient_id")["sentence_index"].transform("size")
    checked = 0
    for row in spans[n_sentences > 1].itertuples():  # a report's only sentence: no report left
        assert total.get((row.patient_id, row.sentence_index), 0.0) == pytest.approx(
            row.attribution, abs=1e-5
        )
        mine = terms[
            (terms["patient_id"] == row.patient_id)
            & (terms["sentence_index"] == row.sentence_index)
        ]
        assert row.terms == format_terms(list(zip(mine["term"], mine["attribution"])))
        checked += bool(row.terms)
    assert checked >= 10


def _expected_terms(folds, text: str) -> dict[str, float]:
    """Each term's exact contribution to the report's linear member (its lexical columns, the
    last ones with ``both``), averaged over the fold models."""
    expected: dict[str, float] = {}
    for fi in folds:
        vectorizer = fi.fold.pipelines["report"].vectorizer_
        coef = fi.model.members["report"].weight.detach().numpy()[0, -vectorizer.n_terms :]
        for term, value in vectorizer.contributions(text, coef):
            expected[term] = expected.get(term, 0.0) + value / len(folds)
    return expected


def test_a_term_is_its_column_of_the_linear_member(lexical_linear):
    """Each term of the report's linear member: coefficient times the change of its column when
    the sentence's occurrences leave the report (the vectorizer's exact contribution when only
    that sentence holds the term)."""
    run, cohort = lexical_linear
    model = multimodal.load_run(run)
    pid = str(cohort.availability()["report"].pipe(lambda s: s.index[s][0]))
    text = "Grade 3 carcinoma. No lymphovascular invasion. Margins: negative."
    one = _with_report(cohort, pid, text)
    folds = fold_inputs(model, one, [pid])
    terms = term_attributions(folds, one)
    expected = _expected_terms(folds, text)
    raw = dict(zip(terms["term"], terms["attribution_raw"]))
    assert set(raw) == set(expected)  # every term occurs once: in one sentence
    assert [raw[t] for t in sorted(raw)] == pytest.approx(
        [expected[t] for t in sorted(raw)], abs=1e-5
    )


def test_with_both_features_a_term_moves_its_lexical_column_only(tmp_path, monkeypatch):
    """``text_features="both"``: the embedding columns stay the report's, so a term's value is
    the linear member's lexical coefficient times its column's change."""
    from multimodal.data.synth import generate_cohort
    from multimodal.training.pipelines_text import TextPipeline

    monkeypatch.setattr(TextPipeline, "_embedder", lambda self: _FakeEmbedder())
    generate_cohort(tmp_path / "c", n_patients=60, seed=4, with_images=False, n_genes=20)
    cohort = multimodal.Cohort.load(tmp_path / "c" / "cohort.yaml")
    config = {**LINEAR_LEXICAL, "data": {**LINEAR_LEXICAL["data"], "text_features": "both"}}
    multimodal.train(config, cohort=cohort, out=tmp_path / "run")
    model = multimodal.load_run(tmp_path / "run")
    pid = str(cohort.availability()["report"].pipe(lambda s: s.index[s][0]))
    text = "Grade 3 carcinoma. No lymphovascular invasion. Margins: negative."
    one = _with_report(cohort, pid, text)
    folds = fold_inputs(model, one, [pid])
    terms = term_attributions(folds, one)
    expected = _expected_terms(folds, text)
    raw = dict(zip(terms["term"], terms["attribution_raw"]))
    assert set(raw) == set(expected) and np.abs(list(raw.values())).max() > 1e-4
    assert [raw[t] for t in sorted(raw)] == pytest.approx(
        [expected[t] for t in sorted(raw)], abs=1e-5
    )
    spans = sentence_attributions(folds, one)
    assert spans["counterfactual"].eq("neutral sentence, terms removed").all()
    assert spans["terms"].ne("").any()


def test_a_negated_finding_shows_as_its_neg_term(lexical_linear):
    """A model whose report term weighs only "lymphovascular" (+) and its negation (-): "No
    lymphovascular invasion." is explained by ``neg_lymphovascular`` lowering the risk, the
    affirmative sentence by ``lymphovascular`` raising it, the other sentences by nothing."""
    run, cohort = lexical_linear
    model = multimodal.load_run(run)
    for fm in model.folds:
        terms = fm.pipelines["report"].vectorizer_.terms_
        assert {"lymphovascular", "neg_lymphovascular"} <= set(terms)
        weight = fm.model.members["report"].linear.weight
        weight.data.zero_()
        weight.data[0, terms.index("lymphovascular")] = 0.5
        weight.data[0, terms.index("neg_lymphovascular")] = -0.5
    pid = str(cohort.availability()["report"].pipe(lambda s: s.index[s][0]))
    negative = "Grade 2 carcinoma. No lymphovascular invasion. Margins: negative."
    positive = "Grade 2 carcinoma. Lymphovascular invasion is present. Margins: negative."
    for text, term, sign in ((negative, "neg_lymphovascular", -1), (positive, "lymphovascular", 1)):
        one = _with_report(cohort, pid, text)
        spans = model.explain(one, [pid], methods=["text"]).text_spans.sort_values("sentence_index")
        cells = spans["terms"].tolist()
        assert cells[0] == cells[2] == ""
        (shown, value), *rest = parse_terms(cells[1])
        assert shown == term and np.sign(value) == sign and not rest
        # the sentence's only moving term; both are shrunk within the two fold models' noise,
        # pooled over the report's terms and over its sentences respectively (measured 0.1 %)
        assert value == pytest.approx(spans["attribution"].iloc[1], rel=0.01)


def test_embedding_runs_have_no_terms(smoke_explanation, tmp_path):
    spans = smoke_explanation.text_spans
    assert len(spans) and spans["terms"].eq("").all()
    smoke_explanation.save(tmp_path / "ex")
    loaded = Explanation.load(tmp_path / "ex").text_spans
    assert loaded["terms"].eq("").all()  # not NaN


def test_the_dashboard_reads_the_terms_in_its_units():
    """The patient page's report hover: a sentence's terms in risk units, or in percentage
    points as the sentence's own value (:func:`~multimodal.dashboard.evidence.in_points`)."""
    from multimodal.dashboard.evidence import Evidence, in_points, sentence_terms
    from multimodal.dashboard.vocabulary import points_from_risk

    spans = pd.DataFrame(
        {
            "sentence_index": [0, 1],
            "start": [0, 10],
            "end": [9, 30],
            "attribution": [0.0, -0.2],
            "terms": [np.nan, "neg_lymphovascular -0.150; neg_invasion -0.050"],
        }
    )
    ev = in_points(Evidence("explanations", pd.DataFrame(), spans=spans), survival=0.6)
    first, second = (row for _, row in ev.spans.iterrows())
    assert sentence_terms(first) == [] and sentence_terms(first, "points") == []
    assert sentence_terms(second) == [("neg_lymphovascular", -0.15), ("neg_invasion", -0.05)]
    points = sentence_terms(second, "points")
    assert [t for t, _ in points] == ["neg_lymphovascular", "neg_invasion"]
    assert [v for _, v in points] == pytest.approx(points_from_risk(np.array([-0.15, -0.05]), 0.6))
