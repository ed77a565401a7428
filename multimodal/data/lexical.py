"""Lexical features of report text: words and word pairs, negation marked, TF-IDF, z-scored.

Pooled sentence embeddings of pathology reports blur the few words that carry prognosis ("no
lymphovascular invasion", "HER2 negative", "R1"); a ridge Cox model on the report's words keeps
them. We write our own vectorizer rather than use scikit-learn's ``TfidfVectorizer`` because the
terms need negation marks (below), the state must be plain JSON saved with the model, every term
must point back at the words it came from (explanations), and a term's part of a linear score
must be exact.

**Tokens.** The text is lower-cased and cut into *clauses* at sentence ends (``.``, ``!``, ``?``
followed by white space), semicolons and line breaks -- a ``Key: value`` line is one clause. A
word is a run of letters and digits (``pt2``, ``her2``, ``r0``, ``g3``; a decimal number such as
``4.0`` is one word). Single letters (list markers, OCR debris) and the :data:`STOP_WORDS` are
dropped; no negation word is a stop word.

**Negation (NegEx-like).** Within a clause, a comma starts a new *phrase* and a colon a new
*segment* (``key: value``). Trigger phrases are matched longest first:

- :data:`PRE_TRIGGERS` ("no", "not", "without", "negative for", "free of", "absence of",
  "neither", "nor", ...) negate the words after them, up to the end of the clause, a colon, a
  :data:`TERMINATORS` word ("but", "however", "although", "except", ...) or
  :data:`MAX_SCOPE` words. Commas do not end this scope: lists follow a forward trigger
  ("negative for dysplasia, carcinoma and invasion").
- :data:`POST_TRIGGERS` ("not identified", "not seen", "not present", ...) negate the words
  before them in their phrase (back to a comma, colon, terminator, another trigger, or
  :data:`MAX_SCOPE` words). Commas end this scope: items of a list state their own polarity
  ("ER positive, PR positive, HER2 negative" negates only ``her2``).
- :data:`DUAL_TRIGGERS` ("negative", "absent", "absence", "none") look backward when a subject
  stands before them in their phrase ("HER2 negative" -> ``neg_her2``, "Necrosis absent",
  "estrogen receptor negative progesterone receptor negative" -> both receptors negated), and
  forward otherwise when a word of their phrase follows ("negative margins", "R0, indicates
  negative margins" -> ``neg_margins``; :data:`LINKING_WORDS` such as "indicates" are no
  subject). "HER2 negative breast cancer" therefore negates ``her2`` only.
- *Key rule*: a segment (value) that holds a trigger and whose every other word is negated
  negates the segment before it (its key) when the value holds nothing but the trigger or
  repeats a word of the key: "Lymphovascular invasion: Absent", "Lymphovascular invasion: No",
  "Lymphovascular invasion: Not identified" and "Lymphovascular invasion: No lymphovascular
  invasion" all give ``neg_lymphovascular neg_invasion`` only, while "Lymphovascular invasion:
  Present" gives ``lymphovascular invasion`` and ``invasion present``. A value about something
  else leaves its key plain ("Results of IHC: Negative for TTF-1": ``results``, ``neg_ttf``).
- :data:`PSEUDO_TRIGGERS` ("not mentioned", "not specified", "no change", ...) say that something
  is unknown or unchanged, not absent: their words stay plain tokens ("not specified").

Trigger words themselves are not terms. A negated word becomes ``neg_<word>``; "positive" is an
ordinary word, so "estrogen receptor positive" gives ``estrogen receptor``, ``receptor positive``
and ``positive``, distinct from ``neg_estrogen neg_receptor``. "HER2-negative" is two words,
read as "HER2 negative".

**Terms and weights.** Terms are the marked words and the pairs of neighbouring marked words of a
clause (``"neg_lymphovascular neg_invasion"``). :meth:`LexicalVectorizer.fit` keeps the terms
found in at least ``min_df`` training texts (a count, or a fraction of the texts), at most
``max_terms`` of them (the most frequent by document frequency; ties by the term), leaving out
terms with the same count in every training text (they carry nothing to learn). A text's weight
of term j is ``(1 + log tf_j) * idf_j`` (sublinear term frequency; 0 when the term is absent) with
the smooth ``idf_j = log((1 + n) / (1 + df_j)) + 1``; each column is then z-scored with the
training texts' mean and SD, the SD floored at ``SD_FLOOR * idf_j`` (a term in almost every or
almost no training text would otherwise give huge values on a new text). Weighted counts rather
than binary presence: a finding stated for several specimens (lymph node stations "negative for
malignancy") is evidence of more, with diminishing returns. Because each column is z-scored, idf
only rescales a column and drops out of the features (it matters only where the SD floor binds);
z-scoring is what lets one ridge penalty treat every term alike. With ``scaling="pooled"``
every column is divided by one SD instead (the root mean of the columns' variances), so a rare
term keeps its small variance and a ridge penalty shrinks it more than a common one. Rows are
not length-normalised, so each term's part of a linear score is exact and separate
(:meth:`~LexicalVectorizer.contributions`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "DUAL_TRIGGERS",
    "LINKING_WORDS",
    "MAX_SCOPE",
    "POST_TRIGGERS",
    "PRE_TRIGGERS",
    "PSEUDO_TRIGGERS",
    "SD_FLOOR",
    "STOP_WORDS",
    "TERMINATORS",
    "LexicalVectorizer",
    "TermSpan",
    "term_counts",
    "tokenize",
]

#: Negate the words after them.
PRE_TRIGGERS: tuple[str, ...] = (
    "no",
    "not",
    "without",
    "negative for",
    "free of",
    "free from",
    "absence of",
    "no evidence of",
    "no sign of",
    "no signs of",
    "none of",
    "neither",
    "nor",
    "lack of",
    "lacks",
    "lacking",
)
#: Negate the words before them (in their phrase).
POST_TRIGGERS: tuple[str, ...] = (
    "not identified",
    "not seen",
    "not present",
    "not detected",
    "not found",
    "not noted",
    "not observed",
    "not appreciated",
    "not involved",
    "cannot be identified",
)
#: Forward when a word of their phrase follows them, backward otherwise.
DUAL_TRIGGERS: tuple[str, ...] = ("negative", "absent", "absence", "none")
#: Words between a subject and a dual trigger that are not themselves the subject.
LINKING_WORDS: frozenset[str] = frozenset(
    "indicates indicating indicated shows showing show shown reveals revealing revealed "
    "demonstrates demonstrating demonstrated appears appear remains remain all".split()
)
#: Look like negations but say "unknown" or "unchanged": their words stay plain.
PSEUDO_TRIGGERS: tuple[str, ...] = (
    "not mentioned",
    "not specified",
    "not described",
    "not indicated",
    "not stated",
    "not applicable",
    "not assessed",
    "not evaluated",
    "not performed",
    "not only",
    "not necessarily",
    "not otherwise specified",
    "not otherwise classified",
    "no change",
    "no significant change",
    "no increase",
)
#: End a negation's scope.
TERMINATORS: frozenset[str] = frozenset(
    {"but", "however", "although", "though", "except", "yet", "whereas", "nevertheless", "apart"}
)
#: Dropped words (no negation word among them).
STOP_WORDS: frozenset[str] = (
    frozenset(
        "a an the of and or in on at to for with by from as is are was were be been being this "
        "that these those it its which there any also has have had into per than then such each "
        "other within upon".split()
    )
    | TERMINATORS
)
#: Words a negation reaches at most (stop words not counted).
MAX_SCOPE = 6
#: How columns are scaled after centring (:class:`LexicalVectorizer` ``scaling``).
SCALINGS = ("term", "pooled")
#: A column's SD is at least this fraction of its idf.
SD_FLOOR = 0.05
#: Prefix of a negated word.
NEG = "neg_"

_CLAUSE_BREAK = re.compile(r"(?<=[.!?])\s+|;|\n")
_PIECE = re.compile(r"(\d+(?:\.\d+)+|[^\W_]+)|([:,])")
_TRIGGERS: dict[tuple[str, ...], str] = {
    **{tuple(p.split()): "pre" for p in PRE_TRIGGERS},
    **{tuple(p.split()): "post" for p in POST_TRIGGERS},
    **{tuple(p.split()): "dual" for p in DUAL_TRIGGERS},
    **{tuple(p.split()): "pseudo" for p in PSEUDO_TRIGGERS},
}
_LONGEST = max(map(len, _TRIGGERS))


class TermSpan(NamedTuple):
    """A term of a text and where it is: ``text[start:end]`` spans its word (or word pair).

    ``term`` is a marked word (``word`` or ``neg_<word>``) or two of them joined by a space;
    ``clause`` is the index of its clause among the clauses of the text that hold words.
    """

    term: str
    clause: int
    start: int
    end: int


@dataclass
class _Word:
    word: str
    start: int
    end: int
    segment: int
    phrase: int
    trigger: bool = False
    negated: bool = False


def _clauses(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each clause of ``text`` that holds a letter or digit."""
    spans, start = [], 0
    for m in _CLAUSE_BREAK.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if any(ch.isalnum() for ch in text[a:b])]


def _words(lower: str, start: int, end: int) -> list[_Word]:
    """The words of one clause with their segment (colons) and phrase (colons and commas)."""
    words, segment, phrase = [], 0, 0
    for m in _PIECE.finditer(lower, start, end):
        if m.group(2):
            phrase += 1
            segment += m.group(2) == ":"
            continue
        w = m.group(1)
        if len(w) == 1 and w.isalpha():
            continue
        words.append(_Word(w, m.start(), m.end(), segment, phrase))
    return words


def _match(words: list[_Word], i: int) -> tuple[str, int] | None:
    """The longest trigger phrase starting at word i (within one phrase): (kind, length)."""
    for n in range(min(_LONGEST, len(words) - i), 0, -1):
        if words[i + n - 1].phrase != words[i].phrase:
            continue
        kind = _TRIGGERS.get(tuple(w.word for w in words[i : i + n]))
        if kind:
            return kind, n
    return None


def _content(w: _Word) -> bool:
    return not w.trigger and w.word not in STOP_WORDS


def _scope(words: list[_Word], indices: Iterable[int], same: str, anchor: _Word) -> None:
    """Negate the content words at ``indices`` while they share ``anchor``'s ``same`` field."""
    reached = 0
    for j in indices:
        w = words[j]
        if getattr(w, same) != getattr(anchor, same) or w.trigger or w.word in TERMINATORS:
            return
        if w.word in STOP_WORDS:
            continue
        w.negated = True
        reached += 1
        if reached == MAX_SCOPE:
            return


def _looks_forward(words: list[_Word], i: int, after: int) -> bool:
    """Whether the dual trigger ``words[i:after]`` negates what follows it: no subject before it
    in its phrase (back to another trigger; :data:`LINKING_WORDS` do not count) and a word of
    its phrase after it."""
    for w in reversed(words[:i]):
        if w.phrase != words[i].phrase or w.trigger or w.word in TERMINATORS:
            break
        if _content(w) and w.word not in LINKING_WORDS:
            return False
    return (
        after < len(words)
        and words[after].phrase == words[i].phrase
        and words[after].word not in TERMINATORS
        and not words[after].trigger
    )


def _mark(words: list[_Word]) -> None:
    """Set ``trigger`` and ``negated`` on the words of one clause (rules: module docstring)."""
    found: list[tuple[str, int, int]] = []
    i = 0
    while i < len(words):
        hit = _match(words, i)
        if hit is None:
            i += 1
            continue
        kind, n = hit
        if kind != "pseudo":
            for w in words[i : i + n]:
                w.trigger = True
            found.append((kind, i, n))
        i += n
    for kind, i, n in found:
        after = i + n
        if kind == "pre" or (kind == "dual" and _looks_forward(words, i, after)):
            _scope(words, range(after, len(words)), "segment", words[i])
        else:
            _scope(words, range(i - 1, -1, -1), "phrase", words[i])
    _negate_keys(words)


def _negate_keys(words: list[_Word]) -> None:
    """Key rule: a value segment that is all negation negates its key (module docstring)."""
    n_segments = words[-1].segment + 1 if words else 0
    for s in range(n_segments - 1, 0, -1):
        value = [w for w in words if w.segment == s and _content(w)]
        key = [w for w in words if w.segment == s - 1 and _content(w)]
        negation = any(w.trigger for w in words if w.segment == s)
        if not negation or not all(w.negated for w in value):
            continue
        if not value or {w.word for w in value} & {w.word for w in key}:
            for w in key:
                w.negated = True


def tokenize(text: str) -> list[TermSpan]:
    """The marked words of ``text`` in order, stop words and trigger words left out.

    Parameters
    ----------
    text : one report (any string; empty gives no tokens).

    Returns
    -------
    list of :class:`TermSpan`, one per word: ``text[t.start:t.end]`` is the word (any case),
    ``t.term`` the word lower-cased, ``neg_`` before it when negated.
    """
    text = "" if text is None else str(text)
    lower = text.lower()
    out = []
    for c, (a, b) in enumerate(_clauses(lower)):
        words = _words(lower, a, b)
        _mark(words)
        for w in filter(_content, words):
            out.append(TermSpan(NEG + w.word if w.negated else w.word, c, w.start, w.end))
    return out


def _spans(tokens: list[TermSpan]) -> list[TermSpan]:
    """Unigrams and within-clause bigrams of ``tokens``, with their character spans."""
    out = list(tokens)
    for a, b in pairwise(tokens):
        if a.clause == b.clause:
            out.append(TermSpan(f"{a.term} {b.term}", a.clause, a.start, b.end))
    return out


def term_counts(text: str) -> Counter[str]:
    """How often each term (marked word or pair of neighbouring marked words) occurs in ``text``.

    Clauses never share a term, so the counts of a text joined from clauses by line breaks are
    the sum of the clauses' counts.
    """
    return Counter(s.term for s in _spans(tokenize(text)))


class LexicalVectorizer:
    """TF-IDF of negation-marked words and word pairs, z-scored on the training texts.

    Parameters
    ----------
    min_df : a term is kept when it occurs in at least this many training texts (int >= 1) or
        this fraction of them (float in (0, 1]; rounded up).
    max_terms : at most this many terms, the most frequent by document frequency.
    scaling : ``"term"`` (each column divided by its own SD, floored) or ``"pooled"`` (every
        column divided by one SD, the root mean of the columns' variances: a rare term keeps its
        small variance).

    Attributes (after :meth:`fit`)
    -------------------------------
    terms_ : list[str], the kept terms in alphabetical order (the feature columns).
    idf_, mean_, sd_ : (n_terms,) float64 arrays.
    n_documents_ : number of training texts.
    """

    def __init__(
        self, min_df: int | float = 5, max_terms: int = 1000, scaling: str = "term"
    ) -> None:
        if isinstance(min_df, bool) or not (
            (isinstance(min_df, int) and min_df >= 1)
            or (isinstance(min_df, float) and 0.0 < min_df <= 1.0)
        ):
            raise ValueError(
                f"min_df is {min_df!r}; give a number of texts (int >= 1) or a fraction of them "
                "(float in (0, 1])"
            )
        if isinstance(max_terms, bool) or not isinstance(max_terms, int) or max_terms < 1:
            raise ValueError(f"max_terms is {max_terms!r}; it must be an int >= 1")
        if scaling not in SCALINGS:
            raise ValueError(f"scaling is {scaling!r}; give one of {', '.join(SCALINGS)}")
        self.min_df, self.max_terms, self.scaling = min_df, max_terms, scaling
        self.terms_: list[str] | None = None

    @property
    def n_terms(self) -> int:
        """Number of feature columns (0 before :meth:`fit`)."""
        return len(self.terms_ or [])

    def min_documents(self, n_documents: int) -> int:
        """The least number of training texts a kept term occurs in, for ``n_documents`` texts."""
        if isinstance(self.min_df, float):
            return max(1, math.ceil(self.min_df * n_documents - 1e-9))
        return self.min_df

    def fit(self, texts: Sequence[str]) -> LexicalVectorizer:
        """Choose the terms and fit idf, mean and SD on ``texts`` (the training reports)."""
        return self.fit_counts([term_counts(t) for t in texts])

    def fit_counts(self, counts: Sequence[Counter[str]]) -> LexicalVectorizer:
        """:meth:`fit` from :func:`term_counts` of each training text.

        Raises
        ------
        ValueError : no text, or no term occurs in enough texts.
        """
        n = len(counts)
        if n == 0:
            raise ValueError("no training texts to fit the lexical features on")
        df = Counter(term for c in counts for term in c)
        need = self.min_documents(n)
        constant = {t for t, k in df.items() if k == n and len({c[t] for c in counts}) == 1}
        kept = [t for t, k in df.items() if k >= need and t not in constant]
        candidates = sorted(kept, key=lambda t: (-df[t], t))
        if not candidates:
            raise ValueError(
                f"no term occurs in at least {need} of the {n} training texts (and varies between "
                "them); fit on more (or longer) texts, or lower min_df"
            )
        self.terms_ = sorted(candidates[: self.max_terms])
        self.n_documents_ = n
        dfs = np.array([df[t] for t in self.terms_], dtype=np.float64)
        self.idf_ = np.log((1.0 + n) / (1.0 + dfs)) + 1.0
        w = self._weights(counts)
        self.mean_ = w.mean(axis=0)
        if self.scaling == "pooled":
            pooled = max(float(np.sqrt(np.mean(w.var(axis=0)))), 1e-12)
            self.sd_ = np.full(len(self.terms_), pooled)
        else:
            self.sd_ = np.maximum(w.std(axis=0), SD_FLOOR * self.idf_)
        return self

    def _check_fitted(self) -> None:
        if self.terms_ is None:
            raise RuntimeError("LexicalVectorizer is not fitted: call fit() or from_state() first")

    def _weights(self, counts: Sequence[Counter[str]]) -> np.ndarray:
        """(n, n_terms) float64 ``(1 + log tf) * idf`` (0 where a term is absent)."""
        column = {t: j for j, t in enumerate(self.terms_ or [])}
        tf = np.zeros((len(counts), len(column)))
        for i, c in enumerate(counts):
            for term, k in c.items():
                j = column.get(term)
                if j is not None:
                    tf[i, j] = k
        w = np.zeros_like(tf)
        np.log(tf, out=w, where=tf > 0)
        return np.where(tf > 0, 1.0 + w, 0.0) * self.idf_

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """(n, n_terms) float32 z-scored TF-IDF of ``texts``; terms not kept in fit are ignored."""
        return self.transform_counts([term_counts(t) for t in texts])

    def transform_counts(self, counts: Sequence[Counter[str]]) -> np.ndarray:
        """:meth:`transform` from :func:`term_counts` of each text."""
        self._check_fitted()
        return ((self._weights(counts) - self.mean_) / self.sd_).astype(np.float32)

    def terms_of(self, text: str) -> list[TermSpan]:
        """Where the kept terms occur in ``text``: ``text[start:end]`` spans the word (pair)."""
        self._check_fitted()
        kept = set(self.terms_ or [])
        return [s for s in _spans(tokenize(text)) if s.term in kept]

    def contributions(
        self, text: str, coef: Sequence[float] | np.ndarray
    ) -> list[tuple[str, float]]:
        """Each kept term's exact part of the linear score ``transform([text])[0] @ coef``.

        A term's contribution is the score of ``text`` minus the score of the same text with that
        term's count set to zero: ``coef_j * (1 + log tf_j) * idf_j / sd_j`` (each column depends
        on its own term only). The contributions of a text sum to ``score(text) -
        score(reference)``, the reference being a text with none of the kept terms (an empty
        report), whose score is ``-sum_j coef_j * mean_j / sd_j``.

        Parameters
        ----------
        coef : (n_terms,) coefficients of the feature columns.

        Returns
        -------
        ``(term, contribution)`` for each kept term of ``text``, largest ``|contribution|`` first
        (ties by term).
        """
        self._check_fitted()
        coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        if coef.shape != (self.n_terms,):
            raise ValueError(
                f"coef has {coef.size} values; the vectorizer has {self.n_terms} terms"
            )
        w = self._weights([term_counts(text)])[0]
        part = coef * w / self.sd_
        out = [(t, float(part[j])) for j, t in enumerate(self.terms_ or []) if w[j] > 0]
        return sorted(out, key=lambda tv: (-abs(tv[1]), tv[0]))

    def state(self) -> dict[str, Any]:
        """JSON-safe fitted state (settings, terms, idf, mean, SD); see :meth:`from_state`."""
        self._check_fitted()
        return {
            "min_df": self.min_df,
            "max_terms": self.max_terms,
            "scaling": self.scaling,
            "n_documents": int(self.n_documents_),
            "terms": list(self.terms_ or []),
            "idf": self.idf_.tolist(),
            "mean": self.mean_.tolist(),
            "sd": self.sd_.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LexicalVectorizer:
        """The vectorizer :meth:`state` saved (its transform is identical).

        Raises
        ------
        KeyError, ValueError : a state with missing keys or arrays of the wrong length.
        """
        out = cls(
            min_df=state["min_df"],
            max_terms=int(state["max_terms"]),
            scaling=state.get("scaling", "term"),  # states saved before scaling existed
        )
        terms = [str(t) for t in state["terms"]]
        arrays = {k: np.asarray(state[k], dtype=np.float64) for k in ("idf", "mean", "sd")}
        bad = [k for k, v in arrays.items() if v.shape != (len(terms),)]
        if not terms or bad:
            raise ValueError(
                f"lexical state: {len(terms)} terms but {bad or 'no'} arrays of another length"
            )
        out.terms_, out.n_documents_ = terms, int(state["n_documents"])
        out.idf_, out.mean_, out.sd_ = arrays["idf"], arrays["mean"], arrays["sd"]
        return out
