"""Sentence attributions: spans map back to the report; each sentence against the neutral sentence
is exact; shrinkage keeps the ranking; the top sentence states a finding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multimodal.explain.text import sentence_spans, shrink_to_noise

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


def test_the_generator_records_which_sentences_state_a_finding(tmp_path):
    """report_sentences.csv: every sentence written, in its report, with its role; each main
    report states each finding once; signal_spans finds them among the pipeline's sentences."""
    from multimodal.data.synth import generate_cohort
    from multimodal.data.synth_text import SIGNAL_ROLES, signal_spans

    res = generate_cohort(tmp_path, n_patients=40, seed=5, with_images=False, n_genes=20)
    written = pd.read_csv(tmp_path / "report_sentences.csv", dtype={"patient_id": str})
    pd.testing.assert_frame_equal(written, res.report_sentences, check_dtype=False)
    reports = pd.read_csv(tmp_path / "reports.csv", dtype={"patient_id": str})
    assert set(written["patient_id"]) == set(reports["patient_id"])
    for pid, rows in reports.groupby("patient_id"):
        mine = written[written["patient_id"] == pid]
        assert all(any(s in text for text in rows["text"]) for s in mine["sentence"])
        main = mine[mine["report_type"] != "addendum"]
        assert sorted(main.loc[main["signal"], "role"]) == sorted(SIGNAL_ROLES)
        assert not mine.loc[mine["report_type"] == "addendum", "signal"].any()
        text = "\n\n".join(rows["text"])
        sentences = [s for s, _, _ in sentence_spans(text)]
        signal = signal_spans(sentences, list(zip(mine["sentence"], mine["role"])))
        # a margin or node finding with a ";" gives two spans; a header joins a finding's span
        assert 4 <= signal.sum() <= 6 and (~signal).sum() >= 1


def test_text_spans_match_the_cohort_reports(smoke_explanation, smoke_cohort):
    spans = smoke_explanation.text_spans
    texts = smoke_cohort.sources["report"].texts()
    assert len(spans) and spans["modality"].eq("report").all()
    for row in spans.itertuples():
        assert texts[row.patient_id][row.start : row.end] == row.sentence
    has = smoke_cohort.availability()["report"]
    assert set(spans["patient_id"]) == set(has.index[has])


def _risk_with_report(model, cohort, pid: str, text: str | None = None) -> float:
    """Predicted risk of the patient with the report replaced by ``text`` ("" = no report)."""
    one = cohort.subset([pid])
    if text is not None:
        source = one.sources["report"]
        source.table = pd.DataFrame({"patient_id": [pid], "text": [text]})
        source.__dict__.pop("_texts", None)  # texts() caches the joined reports
    return float(model.predict_risk(one)[pid])


class _Reports:
    """A text source of reports: what a text pipeline reads (``texts()``, ``name``)."""

    kind = "text"
    name = "report"

    def __init__(self, texts: dict[str, str]) -> None:
        self._texts = pd.Series(texts, dtype=object)
        self.patient_ids = self._texts.index

    def texts(self) -> pd.Series:
        return self._texts


def test_shrinkage_keeps_sign_and_ranking_and_stops_at_the_noise():
    rng = np.random.default_rng(0)
    per_fold = rng.normal(size=(5, 12)) + np.linspace(-2.0, 3.0, 12)
    groups = np.repeat([0, 1, 2], 4)
    attribution, raw, noise = shrink_to_noise(per_fold, groups)
    assert raw == pytest.approx(per_fold.mean(0))
    assert np.all(np.sign(attribution) == np.sign(raw))
    assert np.all(np.abs(attribution) <= np.abs(raw))
    for g in range(3):  # one noise level per report, so a report's ranking is the ensemble's
        rows = groups == g
        assert np.unique(noise[rows]).size == 1
        assert list(np.argsort(np.abs(attribution[rows]))) == list(np.argsort(np.abs(raw[rows])))
    # grouped jackknife: (K - 1) / K * sum of squared deviations, pooled over the report
    var = 4 / 5 * ((per_fold - raw) ** 2).sum(0)
    assert noise[0] == pytest.approx(np.sqrt(var[:4].mean()))
    # an effect at the noise level is halved; one far above it kept; agreeing folds: no shrinkage
    at_noise, _, _ = shrink_to_noise(np.array([[0.0, 2.0], [2.0, 0.0]]), np.array([0, 0]))
    assert at_noise == pytest.approx([0.5, 0.5])
    far, _, _ = shrink_to_noise(np.array([[100.0, 0.9], [100.0, 1.1]]), np.array([0, 0]))
    assert far[0] == pytest.approx(100.0, rel=1e-4)
    same, _, noise = shrink_to_noise(np.full((3, 2), 0.25), np.array([0, 1]))
    assert same == pytest.approx([0.25, 0.25]) and noise == pytest.approx([0.0, 0.0])
    one, raw, noise = shrink_to_noise(np.array([[0.3, -0.1]]), np.array([0, 0]))
    assert one == pytest.approx(raw) and np.isnan(noise).all()  # one fold model: no estimate


def test_a_sentence_is_compared_with_the_neutral_sentence(
    smoke_explanation, smoke_model, smoke_cohort
):
    """text_mlp pools the fold-standardised sentence embeddings by their mean; the neutral
    sentence is the training mean (zero once standardised). Replacing sentence j of n by it gives
    the report vector ``x - x_j / n``, ``x_j`` the sentence alone through the fold's pipeline."""
    from multimodal.models.inference import head_outputs
    from multimodal.training.stores import DenseStore

    spans = smoke_explanation.text_spans
    assert spans["counterfactual"].eq("neutral sentence").all()
    pid = spans["patient_id"].iloc[0]
    rows = spans[spans["patient_id"] == pid]
    one = smoke_cohort.subset([pid])
    deltas = np.zeros(len(rows))
    for fm in smoke_model.folds:
        data = smoke_model.fold_data(fm, one, [pid])
        full = fm.model.head.risk(head_outputs(fm.model, data, smoke_model.device)).item()
        x = data.stores["report"].values
        alone = _Reports({f"s{j}": s for j, s in enumerate(rows["sentence"])})
        singles = fm.pipelines["report"].transform(alone, list(alone.patient_ids)).values
        for j in range(len(rows)):
            values = x - singles[j] / len(rows)
            store = data.stores["report"]
            data.stores["report"] = DenseStore(
                spec=store.spec, present=store.present, values=values
            )
            out = head_outputs(fm.model, data, smoke_model.device)
            data.stores["report"] = store
            deltas[j] += (full - fm.model.head.risk(out).item()) / len(smoke_model.folds)
    assert rows["attribution_raw"].to_numpy() == pytest.approx(deltas, abs=1e-5)
    assert rows["noise_sd"].notna().all()  # two fold models: a noise estimate
    assert np.all(rows["attribution"].abs() <= rows["attribution_raw"].abs() + 1e-12)


def test_text_chunks_see_the_neutral_sentence_as_a_zero_token(smoke_cohort, tmp_path):
    """text_chunks pools standardised sentence tokens by gated attention (order-free): the neutral
    sentence is the zero token, so the attribution is the change when token j is zeroed."""
    import multimodal
    from multimodal.models.inference import head_outputs
    from multimodal.training.stores import TokenStore

    config = {
        "data": {"folds": 2, "modalities": ["clinical", "report"], "early_stopping_fraction": 0.0},
        "encoders": {"report": {"name": "text_chunks", "out_dim": 8}},
        "fusion": {"name": "attention_gated", "dim": 8},
        "members": {"clinical_penalty": None},  # nothing fitted: every epoch trains the encoder
        "train": {"epochs": 3, "batch_size": 32, "refit": False, "progress": False},
        "eval": {"n_times": 4, "bootstrap": 0},
    }
    multimodal.train(config, cohort=smoke_cohort, out=tmp_path / "run")
    model = multimodal.load_run(tmp_path / "run")
    has = smoke_cohort.availability()["report"]
    pid = str(has.index[has][0])
    spans = model.explain(smoke_cohort, patient_ids=[pid], methods=["text"]).text_spans
    assert spans["counterfactual"].eq("neutral sentence").all() and spans["attention"].notna().all()
    one, deltas = smoke_cohort.subset([pid]), np.zeros(len(spans))
    for fm in model.folds:
        data = model.fold_data(fm, one, [pid])
        full = fm.model.head.risk(head_outputs(fm.model, data, model.device)).item()
        store = data.stores["report"]
        for j in range(len(spans)):
            tokens = store.values[0].clone()
            tokens[j] = 0.0
            data.stores["report"] = TokenStore(
                spec=store.spec, present=store.present, values=[tokens]
            )
            out = head_outputs(fm.model, data, model.device)
            deltas[j] += (full - fm.model.head.risk(out).item()) / len(model.folds)
        data.stores["report"] = store
    assert np.abs(deltas).max() > 1e-5
    assert spans["attribution_raw"].to_numpy() == pytest.approx(deltas, abs=1e-5)


def test_the_reports_linear_member_is_shared_out_exactly(linear_model, linear_cohort):
    """configs/demo.yaml's ridge Cox term on the report embedding is the report's only share (one
    fold model: no shrinkage). Sentence j's attribution is what the term loses when j becomes the
    neutral sentence: with r the predicted risk of the full report, r_j of the report without j
    and r_0 without any report, ``r - r_0 - (n - 1) / n * (r_j - r_0)``; they sum to ``r - r_0``."""
    assert "report" in linear_model.folds[0].model.members
    has = linear_cohort.availability()["report"]
    for pid in [str(p) for p in has.index[has][:2]]:
        ex = linear_model.explain(linear_cohort, patient_ids=[pid], methods=["text"])
        spans = ex.text_spans
        n = len(spans)
        assert n >= 2 and spans["attribution"].abs().max() > 1e-4
        assert spans["attribution"].to_numpy() == pytest.approx(spans["attribution_raw"].to_numpy())
        full = _risk_with_report(linear_model, linear_cohort, pid)
        none = _risk_with_report(linear_model, linear_cohort, pid, "")
        assert spans["attribution"].sum() == pytest.approx(full - none, abs=1e-5)  # complete
        text = linear_cohort.sources["report"].texts()[pid]
        sentences = [s for s, _, _ in sentence_spans(text)]
        for row in spans.itertuples():
            rest = "\n".join(s for j, s in enumerate(sentences) if j != row.sentence_index)
            short = _risk_with_report(linear_model, linear_cohort, pid, rest)
            expected = full - none - (n - 1) / n * (short - none)
            assert row.attribution == pytest.approx(expected, abs=1e-5)


#: configs/demo.yaml's members on the clinical covariates and the report only, no deep residual
REPORT_MEMBERS = [
    "data.modalities=[clinical,report]",
    "data.folds=3",
    "members.linear=[report]",
    "members.deep=false",
    "members.penalties=[0.1,1,10000]",
    "eval.bootstrap=0",
    "train.progress=false",
]


def _report_driven_cohort(folder, n_patients: int, seed: int):
    """A synthetic cohort whose deaths depend on the report's findings alone (every death seen)."""
    import multimodal
    from multimodal.data.synth import generate_cohort

    res = generate_cohort(
        folder, n_patients=n_patients, seed=seed, missing_rate=0.0, with_images=False, n_genes=20
    )
    z = res.ground_truth["risk_text"].to_numpy()
    z = (z - z.mean()) / z.std()
    patients = pd.read_csv(folder / "patients.csv")
    patients["time"] = (
        np.round(np.random.default_rng(seed).exponential(24.0 * np.exp(-2.0 * z)), 2) + 0.01
    )
    patients["event"] = 1
    patients.to_csv(folder / "patients.csv", index=False)
    return multimodal.Cohort.load(folder / "cohort.yaml"), res.report_sentences


def test_the_top_sentence_states_a_finding(tmp_path):
    """On reports whose findings (grade, margins, invasion, nodes) drive the outcome, the sentence
    with the largest |attribution| states a finding for most held-out patients -- by the
    generator's record of each sentence's role, not by word matching -- and the boilerplate
    carries little of the attribution."""
    from pathlib import Path

    import multimodal
    from multimodal.data.synth_text import signal_spans

    cohort, _ = _report_driven_cohort(tmp_path / "train", 200, seed=2)
    config = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    multimodal.train(config, cohort=cohort, out=tmp_path / "run", overrides=REPORT_MEMBERS)
    held_out, written = _report_driven_cohort(tmp_path / "held_out", 60, seed=3)
    spans = multimodal.load_run(tmp_path / "run").explain(held_out, methods=["text"]).text_spans
    roles = {p: list(zip(g["sentence"], g["role"])) for p, g in written.groupby("patient_id")}
    top, chance, filler = [], [], []
    for pid, g in spans.groupby("patient_id"):
        signal = signal_spans(g["sentence"], roles[pid])
        a = g["attribution"].abs().to_numpy()
        top.append(signal[np.argmax(a)])
        chance.append(signal.mean())
        filler.append(a[~signal].sum() / a.sum())
    assert len(top) == 60
    # measured 0.88 (leaving the sentence out, without shrinkage: 0.82); a random ranking: 0.56
    assert np.mean(top) >= 0.8 > np.mean(chance) + 0.2
    # measured 0.23 (leaving the sentence out, without shrinkage: 0.32)
    assert np.mean(filler) < 0.3


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
