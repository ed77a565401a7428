"""Lexical report features: negation marks, terms, fitting on training texts, saved state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from multimodal.data.lexical import LexicalVectorizer, term_counts, tokenize

LVI = ["neg_lymphovascular", "neg_invasion"]


def terms(text: str) -> list[str]:
    return [t.term for t in tokenize(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Lymphovascular invasion: Absent", LVI),
        ("Lymphovascular invasion: Not identified", LVI),
        ("Lymphovascular invasion: No", LVI),
        ("no lymphovascular invasion", LVI),
        ("Lymphovascular invasion:  No lymphovascular invasion", LVI + LVI),
        ("Lymphovascular invasion: Lymphovascular invasion absent", LVI + LVI),
        ("Lymphovascular invasion: Absence of lymphovascular invasion", LVI + LVI),
        ("Lymphovascular invasion: Present", ["lymphovascular", "invasion", "present"]),
        ("Perineural invasion is not identified.", ["neg_perineural", "neg_invasion"]),
        ("HER2 negative", ["neg_her2"]),
        ("HER2: negative", ["neg_her2"]),
        (
            "ER positive, PR positive, HER2 negative",
            ["er", "positive", "pr", "positive", "neg_her2"],
        ),
        ("estrogen receptor positive", ["estrogen", "receptor", "positive"]),
        ("Margins: negative", ["neg_margins"]),
        ("negative margins", ["neg_margins"]),
        ("R0, indicates negative margins", ["r0", "indicates", "neg_margins"]),
        ("R1, indicates positive margins", ["r1", "indicates", "positive", "margins"]),
        (
            "Estrogen receptor negative Progesterone receptor negative",
            ["neg_estrogen", "neg_receptor", "neg_progesterone", "neg_receptor"],
        ),
        # a value about something else leaves its key plain
        ("Results of IHC: Negative for TTF-1", ["results", "ihc", "neg_ttf", "neg_1"]),
        # forward scope: lists after the trigger, up to a terminator
        (
            "Negative for dysplasia, carcinoma and invasion but necrosis present",
            ["neg_dysplasia", "neg_carcinoma", "neg_invasion", "necrosis", "present"],
        ),
        ("margins free of tumor", ["margins", "neg_tumor"]),
        # pseudo-negations say "unknown", not "absent"
        ("Nuclear grade: not specified", ["nuclear", "grade", "not", "specified"]),
        ("carcinoma, not otherwise specified", ["carcinoma", "not", "otherwise", "specified"]),
    ],
)
def test_negation_marks(text, expected):
    assert terms(text) == expected


def test_negation_stays_in_its_clause_and_scope():
    # a sentence end, semicolon or line break ends the scope
    for sep in [". ", "; ", "\n"]:
        assert terms(f"No necrosis{sep}Invasion present") == ["neg_necrosis", "invasion", "present"]
    # at most MAX_SCOPE (6) words, stop words not counted
    out = terms("No metastatic carcinoma in the 14 lymph nodes examined today")
    assert out[:6] == ["neg_metastatic", "neg_carcinoma", "neg_14", "neg_lymph", "neg_nodes",
                       "neg_examined"]  # fmt: skip
    assert out[6] == "today"


def test_tokens_keep_codes_and_point_into_the_text():
    text = "pT2 N0, grade G3; R0 resection. HER2/neu 4.0 cm, the a) list"
    tokens = tokenize(text)
    assert [t.term for t in tokens] == [
        "pt2", "n0", "grade", "g3", "r0", "resection", "her2", "neu", "4.0", "cm", "list",
    ]  # fmt: skip
    assert [text[t.start : t.end] for t in tokens][:4] == ["pT2", "N0", "grade", "G3"]
    assert [t.clause for t in tokens] == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2]


def test_bigrams_stay_within_a_clause():
    counts = term_counts("Grade 3 carcinoma. Margins: negative\nNodes 0")
    assert counts["grade 3"] == counts["3 carcinoma"] == counts["neg_margins"] == 1
    assert counts["nodes 0"] == 1
    assert "carcinoma neg_margins" not in counts and "neg_margins nodes" not in counts
    assert term_counts("") == {} and term_counts("   ") == {}


def _corpus() -> list[str]:
    return (
        ["Grade 3. No lymphovascular invasion."] * 4
        + ["Grade 2. Lymphovascular invasion: present."] * 3
        + ["Grade 3 carcinoma. Margins: negative."] * 2
        + ["Grade 1 rare word zebra."]
    )


def test_min_df_and_max_terms():
    texts = _corpus()
    v = LexicalVectorizer(min_df=3).fit(texts)
    assert "zebra" not in v.terms_ and "neg_margins" not in v.terms_  # in 1 and 2 texts
    assert {"neg_lymphovascular neg_invasion", "invasion present", "3"} <= set(v.terms_)
    assert "grade" not in v.terms_  # the same count in every text: nothing to learn
    assert v.terms_ == sorted(v.terms_)
    assert set(LexicalVectorizer(min_df=0.2).fit(texts).terms_) == set(
        LexicalVectorizer(min_df=2).fit(texts).terms_
    )  # 20% of 10 texts
    top = LexicalVectorizer(min_df=1, max_terms=3).fit(texts)
    df = {
        t: sum(t in term_counts(x) for x in texts)
        for t in LexicalVectorizer(min_df=1).fit(texts).terms_
    }
    assert len(top.terms_) == 3 and min(df[t] for t in top.terms_) >= sorted(df.values())[-3]
    with pytest.raises(ValueError, match="no term occurs in at least 5 of the 3"):
        LexicalVectorizer().fit(texts[:3])
    for bad in [0, 1.5, True, -0.1]:
        with pytest.raises(ValueError, match="min_df"):
            LexicalVectorizer(min_df=bad)


def test_weights_are_sublinear_tfidf_z_scored_on_the_training_texts():
    texts = _corpus()
    v = LexicalVectorizer(min_df=2).fit(texts)
    x = v.transform(texts)
    assert x.dtype == np.float32 and x.shape == (10, v.n_terms)
    assert np.abs(x.mean(0)).max() < 1e-5
    # the SD is floored at 0.05 * idf; unfloored columns have SD 1
    assert np.all(x.std(0) <= 1 + 1e-5)
    j = v.terms_.index("3")
    idf = math.log(11 / (1 + 6)) + 1
    assert v.idf_[j] == pytest.approx(idf)
    w = np.array([idf if "Grade 3" in t else 0.0 for t in texts])
    assert x[:, j] == pytest.approx((w - w.mean()) / w.std(), abs=1e-5)
    twice = v.transform(["Grade 3. Grade 3."])[0, j]
    assert twice == pytest.approx(((1 + math.log(2)) * idf - w.mean()) / w.std(), abs=1e-5)


def test_unseen_words_are_ignored_and_empty_text_is_the_reference():
    v = LexicalVectorizer(min_df=2).fit(_corpus())
    empty = v.transform([""])[0]
    assert v.transform(["completely unseen words here"])[0] == pytest.approx(empty)
    assert empty == pytest.approx((-v.mean_ / v.sd_).astype(np.float32))


def test_state_round_trip_is_identical_and_json_safe():
    texts = _corpus()
    v = LexicalVectorizer(min_df=2, max_terms=7).fit(texts)
    state = json.loads(json.dumps(v.state()))
    w = LexicalVectorizer.from_state(state)
    new = ["Grade 3. Lymphovascular invasion: absent.", "", "zebra"]
    assert np.array_equal(w.transform(new), v.transform(new))
    assert w.terms_ == v.terms_ and w.state() == v.state()
    with pytest.raises(ValueError, match="terms"):
        LexicalVectorizer.from_state({**state, "sd": state["sd"][:-1]})


def test_deterministic():
    texts = _corpus()
    a, b = LexicalVectorizer(min_df=1).fit(texts), LexicalVectorizer(min_df=1).fit(texts[::-1])
    assert a.terms_ == b.terms_ and np.array_equal(a.transform(texts), b.transform(texts))


def test_terms_of_and_exact_contributions():
    texts = _corpus()
    v = LexicalVectorizer(min_df=2).fit(texts)
    text = "Grade 3 carcinoma. Margins: negative. No lymphovascular invasion."
    spans = v.terms_of(text)
    assert {s.term for s in spans} <= set(v.terms_)
    found = {s.term: text[s.start : s.end] for s in spans}
    assert found["neg_lymphovascular neg_invasion"] == "lymphovascular invasion"
    assert found["neg_margins"] == "Margins"
    coef = np.random.default_rng(0).normal(size=v.n_terms)
    parts = v.contributions(text, coef)
    x = v.transform([text, ""]).astype(np.float64)
    # the contributions sum to score(text) - score(report without any kept term)
    assert sum(p for _, p in parts) == pytest.approx(x[0] @ coef - x[1] @ coef, abs=1e-4)
    # and each is the score lost when that term's count is set to zero
    term, value = parts[0]
    j = v.terms_.index(term)
    assert value == pytest.approx(coef[j] * (x[0, j] - x[1, j]), abs=1e-5)
    assert abs(parts[0][1]) >= abs(parts[-1][1])
    with pytest.raises(ValueError, match="terms"):
        v.contributions(text, coef[:-1])


def test_pooled_scaling_keeps_each_terms_own_variance_and_exact_contributions():
    """scaling="pooled": every column is centred and divided by one SD, the root mean of the
    columns' variances, so a rare term keeps a smaller variance than a common one; the state
    round-trips, an old state without the key reads as "term", and contributions stay exact."""
    texts = _corpus()
    term, pooled = (
        LexicalVectorizer(min_df=2).fit(texts),
        LexicalVectorizer(min_df=2, scaling="pooled").fit(texts),
    )
    assert pooled.terms_ == term.terms_
    x = pooled.transform(texts).astype(np.float64)
    assert np.abs(x.mean(0)).max() < 1e-5
    assert np.unique(pooled.sd_).size == 1
    assert np.mean(x.var(0)) == pytest.approx(1.0, rel=1e-4)  # one SD for all: mean variance 1
    raw = (x * pooled.sd_ + pooled.mean_).astype(np.float64)  # the weighted counts back
    assert np.allclose(np.argsort(x.var(0), kind="stable"), np.argsort(raw.var(0), kind="stable"))
    state = json.loads(json.dumps(pooled.state()))
    assert state["scaling"] == "pooled"
    again = LexicalVectorizer.from_state(state)
    assert np.array_equal(again.transform(texts), pooled.transform(texts))
    old = {k: v for k, v in term.state().items() if k != "scaling"}
    assert LexicalVectorizer.from_state(old).scaling == "term"
    text = "Grade 3 carcinoma. Margins: negative. No lymphovascular invasion."
    coef = np.random.default_rng(1).normal(size=pooled.n_terms)
    parts = pooled.contributions(text, coef)
    both = pooled.transform([text, ""]).astype(np.float64)
    assert sum(p for _, p in parts) == pytest.approx(both[0] @ coef - both[1] @ coef, abs=1e-4)
    with pytest.raises(ValueError, match="scaling"):
        LexicalVectorizer(scaling="zscore")
