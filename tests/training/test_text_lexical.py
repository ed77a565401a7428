"""Lexical report features (``data.text_features``): the text pipeline, a tiny trained run that
loads and predicts as it trained, sentence explanations, and no transformer model loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

import multimodal
from multimodal.exceptions import ConfigError, DataError
from multimodal.training.preprocess import PIPELINES, PreprocessContext
from multimodal.training.stores import DenseStore
from tests.explain.test_text import _Reports

REPORTS = {
    "a": "Grade 3 carcinoma. Lymphovascular invasion: present.",
    "b": "Grade 1 carcinoma. Lymphovascular invasion: absent.",
    "c": "Grade 3 carcinoma. No lymphovascular invasion.",
    "d": "Grade 2 carcinoma. Lymphovascular invasion: not identified.",
    "e": "Grade 3 carcinoma. Lymphovascular invasion: present. Margins: negative.",
    "f": "Grade 2. Margins: negative.",
    "empty": "   ",
}


class _FakeEmbedder:
    """Deterministic 3-d 'sentence embedding' (word counts): no model needed."""

    dim = 3

    def embed(self, texts):
        words = ("grade", "invasion", "margins")
        return np.array([[t.lower().count(w) for w in words] for t in texts], dtype=np.float32)


def _no_model(*args, **kwargs):
    raise AssertionError("a transformer model (or tokenizer) was loaded for lexical text features")


def _forbid_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the text embedder, tokenizer or any transformers model fails the test."""
    import transformers

    from multimodal.encoders import text
    from multimodal.training.pipelines_text import TextPipeline

    monkeypatch.setattr(TextPipeline, "_embedder", _no_model)
    monkeypatch.setattr(text.TextEmbedder, "__init__", _no_model)
    monkeypatch.setattr(text.TextTokenizer, "__init__", _no_model)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", _no_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", _no_model)


@pytest.fixture
def no_transformer(monkeypatch):
    _forbid_models(monkeypatch)


def _pipeline(features: str, encoder: str = "text_mlp"):
    ctx = PreprocessContext(text_features=features, text_max_terms=50)
    ctx.memo["text-embedder:None:256"] = _FakeEmbedder()
    return PIPELINES.get("text")(ctx, encoder)


def test_lexical_pipeline_loads_no_model_and_round_trips(no_transformer, monkeypatch):
    import multimodal.training.pipelines_text as pt

    monkeypatch.setattr(pt, "LEXICAL_MIN_DF", 2)
    src = _Reports(REPORTS)
    train = ["a", "b", "c", "d", "e"]
    pipe = _pipeline("lexical").fit(src, train)
    store = pipe.transform(src, [*REPORTS, "unknown"])
    assert isinstance(store, DenseStore)
    assert store.present.tolist() == [True] * 6 + [False, False]  # empty report: missing
    assert store.spec.in_features == pipe.n_terms == store.values.shape[1]
    assert store.spec.feature_names == pipe.vectorizer_.terms_
    assert "neg_lymphovascular neg_invasion" in pipe.vectorizer_.terms_
    x = store.values.numpy()
    assert np.abs(x[:5].mean(0)).max() < 1e-5  # z-scored on the training reports
    assert not x[6:].any()
    state = json.loads(json.dumps(pipe.state()))
    assert state["features"] == "lexical" and state["mean"] is None
    again = _pipeline("embedding").load_state(state)  # the state, not the context, decides
    assert again.text_features == "lexical"
    assert np.array_equal(again.transform(src, list(REPORTS)).values.numpy(), x[:7])


def test_pooled_term_scaling_reaches_the_vectorizer_and_its_saved_state(
    no_transformer, monkeypatch
):
    """data.text_term_scaling: pooled -> one SD for every column, saved with the fold state, and
    a loaded pipeline transforms alike whatever its own context says."""
    import multimodal.training.pipelines_text as pt

    monkeypatch.setattr(pt, "LEXICAL_MIN_DF", 2)
    src = _Reports(REPORTS)
    ctx = PreprocessContext(text_features="lexical", text_max_terms=50, text_term_scaling="pooled")
    pipe = PIPELINES.get("text")(ctx, "text_mlp").fit(src, ["a", "b", "c", "d", "e"])
    assert pipe.vectorizer_.scaling == "pooled" and np.unique(pipe.vectorizer_.sd_).size == 1
    x = pipe.transform(src, list(REPORTS)).values.numpy()
    state = json.loads(json.dumps(pipe.state()))
    again = _pipeline("lexical").load_state(state)
    assert again.vectorizer_.scaling == "pooled"
    assert np.array_equal(again.transform(src, list(REPORTS)).values.numpy(), x)


def test_both_puts_the_embedding_first_and_records_the_split(monkeypatch):
    import multimodal.training.pipelines_text as pt

    monkeypatch.setattr(pt, "LEXICAL_MIN_DF", 2)
    src = _Reports(REPORTS)
    train = ["a", "b", "c", "d", "e"]
    both = _pipeline("both").fit(src, train)
    store = both.transform(src, list(REPORTS))
    embedding = _pipeline("embedding").fit(src, train).transform(src, list(REPORTS))
    lexical = _pipeline("lexical").fit(src, train).transform(src, list(REPORTS))
    assert torch_equal(store.values, np.concatenate([embedding.values, lexical.values], 1))
    assert store.spec.group_names == ["embedding", "lexical"]
    assert store.spec.groups == [[0, 1, 2], list(range(3, 3 + both.n_terms))]
    first = lexical.spec.feature_names[0]
    assert store.spec.feature_names[:4] == ["embedding_0", "embedding_1", "embedding_2", first]
    state = json.loads(json.dumps(both.state()))
    again = _pipeline("embedding").load_state(state)
    assert torch_equal(again.transform(src, list(REPORTS)).values, store.values)


def torch_equal(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_old_states_mean_embedding():
    pipe = _pipeline("lexical").load_state({"chunking": "sentences", "mean": None, "std": None})
    assert pipe.text_features == "embedding" and pipe.n_terms == 0
    with pytest.raises(ValueError, match="lexical vocabulary"):
        _pipeline("embedding").load_state({"features": "lexical", "mean": None})


@pytest.mark.parametrize("encoder", ["text_chunks", "text_transformer"])
@pytest.mark.parametrize("features", ["lexical", "both"])
def test_token_encoders_refuse_lexical_features(encoder, features):
    with pytest.raises(ConfigError, match=r"data\.text_features=.*text_mlp.*embedding"):
        _pipeline(features, encoder).fit(_Reports(REPORTS), ["a", "b"])


def test_too_few_reports_is_a_clear_error(no_transformer):
    with pytest.raises(DataError, match=r"text modality 'report'.*2 training report"):
        _pipeline("lexical").fit(_Reports(REPORTS), ["a", "b"])


# ------------------------------------------------------------------------------- end to end
CONFIG = {
    "data": {
        "folds": 2,
        "modalities": ["clinical", "report"],
        "text_features": "lexical",
        "early_stopping_fraction": 0.0,
    },
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "report": {"name": "text_mlp", "out_dim": 4},
    },
    "fusion": {"name": "attention_gated", "dim": 4},
    "members": {"linear": ["report"], "penalties": [1.0]},
    "train": {"epochs": 2, "batch_size": 64, "refit": False, "progress": False},
    "eval": {"n_times": 4, "bootstrap": 0},
}


@pytest.fixture(scope="module")
def lexical_run(tmp_path_factory):
    """A synthetic cohort and a two-fold run on clinical + lexical report features, trained,
    loaded and explained while any transformer model load fails."""
    from multimodal.data.synth import generate_cohort

    root = tmp_path_factory.mktemp("text_lexical")
    generate_cohort(root / "cohort", n_patients=80, seed=3, with_images=False, n_genes=20)
    cohort = multimodal.Cohort.load(root / "cohort" / "cohort.yaml")
    mp = pytest.MonkeyPatch()
    try:
        _forbid_models(mp)
        multimodal.train(CONFIG, cohort=cohort, out=root / "run")
        model = multimodal.load_run(root / "run")
        ids = [str(p) for p in cohort.patients.index]
        predictions = model.predict(cohort)
        explanation = model.explain(cohort, patient_ids=ids[:12], methods=["text"])
    finally:
        mp.undo()
    return root / "run", cohort, model, predictions, explanation


def test_lexical_run_saves_its_vocabulary(lexical_run):
    run, _, model, _, _ = lexical_run
    prep = json.loads((run / "model" / "fold_0" / "preprocess.json").read_text())
    state = prep["report"]["state"]
    assert state["features"] == "lexical" and len(state["lexical"]["terms"]) > 20
    fm = model.folds[0]
    assert fm.model.specs["report"].in_features == len(state["lexical"]["terms"])
    assert fm.pipelines["report"].vectorizer_.terms_ == state["lexical"]["terms"]


def test_loaded_run_reproduces_the_training_predictions(lexical_run):
    from multimodal.models.inference import head_outputs
    from multimodal.runfolder import RunFolder

    run, cohort, model, predictions, _ = lexical_run
    assert predictions["risk"].notna().all()
    for k, fm in enumerate(model.folds):
        saved = RunFolder(run).read_fold_predictions(k)
        ids = saved["patient_id"].astype(str).tolist()
        data = model.fold_data(fm, cohort.subset(ids), ids)
        risk = fm.model.head.risk(head_outputs(fm.model, data, model.device)).cpu().numpy()
        assert risk.reshape(-1) == pytest.approx(saved["risk"].to_numpy(), abs=1e-5)


def test_sentence_attributions_remove_the_sentence(lexical_run):
    """With lexical features a sentence is compared with the report without it: the
    attribution is the fold models' mean change in risk when the report loses the sentence."""
    from multimodal.explain.text import sentence_spans
    from multimodal.models.inference import head_outputs

    _, cohort, model, _, explanation = lexical_run
    spans = explanation.text_spans
    assert len(spans) and spans["counterfactual"].eq("sentence removed").all()
    assert spans["attribution_raw"].abs().max() > 1e-6
    counts = spans.groupby("patient_id").size()
    pid = str(counts.index[counts >= 3][0])
    rows = spans[spans["patient_id"] == pid].sort_values("sentence_index")
    text = cohort.sources["report"].texts()[pid]
    assert [text[a:b] for a, b in zip(rows["start"], rows["end"])] == rows["sentence"].tolist()
    sentences = [s for s, _, _ in sentence_spans(text)]
    deltas = np.zeros(len(rows))
    for fm in model.folds:
        data = model.fold_data(fm, cohort.subset([pid]), [pid])
        full = fm.model.head.risk(head_outputs(fm.model, data, model.device)).item()
        store = data.stores["report"]
        for j in range(len(rows)):
            rest = "\n".join(s for i, s in enumerate(sentences) if i != j)
            data.stores["report"] = fm.pipelines["report"].transform(_Reports({pid: rest}), [pid])
            short = fm.model.head.risk(head_outputs(fm.model, data, model.device)).item()
            deltas[j] += (full - short) / len(model.folds)
        data.stores["report"] = store
    assert rows["attribution_raw"].to_numpy() == pytest.approx(deltas, abs=1e-5)


def test_both_explanation_neutral_embedding_and_removed_terms(tmp_path, monkeypatch):
    """``both``: sentence j's embedding columns become the neutral sentence (``(n - 1) / n`` of
    the report without it) and its lexical columns those of the report without it."""
    from multimodal.data.synth import generate_cohort
    from multimodal.explain.text import sentence_spans
    from multimodal.models.inference import head_outputs
    from multimodal.training.pipelines_text import TextPipeline

    monkeypatch.setattr(TextPipeline, "_embedder", lambda self: _FakeEmbedder())
    generate_cohort(tmp_path / "cohort", n_patients=60, seed=4, with_images=False, n_genes=20)
    cohort = multimodal.Cohort.load(tmp_path / "cohort" / "cohort.yaml")
    config = {**CONFIG, "data": {**CONFIG["data"], "text_features": "both"}}
    multimodal.train(config, cohort=cohort, out=tmp_path / "run")
    model = multimodal.load_run(tmp_path / "run")
    has = cohort.availability()["report"]
    pid = str(has.index[has][0])
    spans = model.explain(cohort, patient_ids=[pid], methods=["text"]).text_spans
    assert spans["counterfactual"].eq("neutral sentence, terms removed").all()
    text = cohort.sources["report"].texts()[pid]
    sentences = [s for s, _, _ in sentence_spans(text)]
    n, deltas = len(sentences), np.zeros(len(sentences))
    for fm in model.folds:
        pipe = fm.pipelines["report"]
        data = model.fold_data(fm, cohort.subset([pid]), [pid])
        full = fm.model.head.risk(head_outputs(fm.model, data, model.device)).item()
        width = data.stores["report"].values.shape[1] - pipe.n_terms
        for j in range(n):
            rest = "\n".join(s for i, s in enumerate(sentences) if i != j)
            short = pipe.transform(_Reports({pid: rest}), [pid])
            values = short.values.clone()
            values[:, :width] *= (n - 1) / n
            data.stores["report"] = DenseStore(
                spec=short.spec, present=short.present, values=values
            )
            out = fm.model.head.risk(head_outputs(fm.model, data, model.device)).item()
            deltas[j] += (full - out) / len(model.folds)
    assert np.abs(deltas).max() > 1e-6
    assert spans.sort_values("sentence_index")["attribution_raw"].to_numpy() == pytest.approx(
        deltas, abs=1e-5
    )
    # a one-sentence report without its sentence: the neutral embedding, no terms at all
    from multimodal.explain.text import _neutral

    pipe = model.folds[0].pipelines["report"]
    empty = pipe.transform(_Reports({"x": ""}), ["x"])
    neutral = _neutral(pipe, empty, np.array([1.0]))
    assert neutral.present.tolist() == [True]
    assert not neutral.values[0, :width].any()
    assert neutral.values[0, width:].numpy() == pytest.approx(pipe.lexical_features([""])[0])


@pytest.mark.parametrize(
    ("missing_rate", "overrides", "message"),
    [
        (
            0.2,
            ["encoders.report.name=text_chunks"],
            "error: data.text_features='lexical' gives one feature vector per report, but the "
            "encoder 'text_chunks' of text modality 'report' reads sentence embeddings",
        ),
        (
            0.9,
            [],
            "error: text modality 'report': lexical features (data.text_features='lexical') "
            "cannot be fitted on the 2 training report(s) of this fold",
        ),
    ],
)
def test_the_command_line_refuses_with_one_line(tmp_path, missing_rate, overrides, message):
    """docs/bad_inputs.md: a token encoder with lexical features; too few training reports."""
    from typer.testing import CliRunner

    from multimodal.cli import app
    from multimodal.data.synth import generate_cohort

    generate_cohort(
        tmp_path / "c", n_patients=40, seed=0, missing_rate=missing_rate, image_size=8, n_genes=20
    )
    config = tmp_path / "config.yaml"
    config.write_text("data: {folds: 2, modalities: [clinical, report]}\ntrain: {epochs: 1}\n")
    sets = ["data.text_features=lexical", "train.progress=false", *overrides]
    args = ["train", "-c", config, "--cohort", tmp_path / "c" / "cohort.yaml"]
    args += ["--out", tmp_path / "run", *[a for s in sets for a in ("--set", s)]]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), result.output
    assert "Traceback" not in result.output
