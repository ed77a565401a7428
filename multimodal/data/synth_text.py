"""Varied pathology-report templates for the synthetic cohort (:mod:`multimodal.data.synth`).

A report states four prognostic findings -- histologic grade, margin status, lymphovascular
invasion (LVI) and the number of positive lymph nodes -- with several phrasings each, in a random
order, mixed with irrelevant filler sentences and optional section headers. Text models must read
the findings; word counts or report length carry no signal.

:func:`report_sentences` and :func:`addendum_sentences` also return the role of every sentence
written (:data:`SIGNAL_ROLES` carry the findings; ``"filler"`` and ``"addendum"`` carry nothing):
the ground truth of which sentences a sentence attribution should point at
(:func:`signal_spans` labels the sentences an explanation found).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "REPORT_TYPES",
    "SIGNAL_ROLES",
    "addendum_sentences",
    "make_addendum",
    "make_report",
    "report_sentences",
    "signal_spans",
]

#: Report types of the main report (one per patient); addenda have type ``"addendum"``.
REPORT_TYPES: tuple[str, ...] = ("surgical pathology", "biopsy pathology", "pathology consult")

_NUMBER_WORDS = (
    "no zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()[1:]
_NUMBER_WORDS[0] = "none"  # index 0 -> "none", 1 -> "one", ...

_GRADE_WORDS = {
    1: "well differentiated",
    2: "moderately differentiated",
    3: "poorly differentiated",
}
_ROMAN = {1: "I", 2: "II", 3: "III"}
#: Roles of the sentences that state a prognostic finding (in the order :func:`_findings` returns
#: them); the other roles are ``"filler"`` and ``"addendum"``.
SIGNAL_ROLES: tuple[str, ...] = ("grade", "margin", "lvi", "nodes")

_GRADE = (
    "Histologic grade: {g} ({w}).",
    "The tumor is {w} (grade {g}).",
    "Grade {r} of III.",
    "Invasive carcinoma, {w}.",
    "Nottingham-type grading: G{g}.",
    "Tumour differentiation: {w}, grade {g}/3.",
)
_MARGIN_POS = (
    "Surgical margins are positive for carcinoma.",
    "Tumor extends to the inked margin.",
    "Margins: involved by invasive carcinoma.",
    "The resection margin is involved.",
    "Carcinoma is present at the deep margin.",
)
_MARGIN_NEG = (
    "Surgical margins are negative for carcinoma.",
    "All margins are free of tumor.",
    "Margins: uninvolved.",
    "The resection margins are clear; closest margin {mm} mm.",
    "No tumor at the inked margins.",
)
_LVI_POS = (
    "Lymphovascular invasion is present.",
    "LVI: identified.",
    "Tumor emboli are seen within lymphovascular spaces.",
    "Lymphovascular space invasion: present (focal).",
)
_LVI_NEG = (
    "No lymphovascular invasion is identified.",
    "LVI: not identified.",
    "Lymphovascular invasion: absent.",
    "There is no evidence of lymphovascular space invasion.",
)
_NODES = (
    "Lymph nodes: {k}/{n} positive.",
    "Metastatic carcinoma in {k} of {n} lymph nodes.",
    "{K} of {N} lymph nodes contain metastatic carcinoma.",
    "Regional lymph nodes examined: {n}; involved: {k}.",
    "Nodal status: {k} positive out of {n} examined.",
)
_NODES_ZERO = (
    "All {n} lymph nodes are negative for metastatic carcinoma.",
    "Lymph nodes: 0/{n} positive.",
    "No metastatic carcinoma in {n} lymph nodes examined.",
)
_FILLER = (
    "The specimen is received in formalin, labeled with the patient's name.",
    "Sections are submitted in {c} cassettes.",
    "The specimen measures {a} x {b} x {c} cm.",
    "Gross photographs were taken.",
    "Ink colors: blue superior, black inferior.",
    "Clinical history: mass identified on routine imaging.",
    "Immunohistochemical controls are appropriate.",
    "The slides were reviewed at the intradepartmental consensus conference.",
    "Tissue was placed in fixative within one hour of excision.",
    "Frozen section diagnosis is concordant with the final diagnosis.",
    "Specimen integrity: intact.",
    "Additional levels were examined.",
    "The case was discussed with the surgical team.",
    "Background tissue shows mild chronic inflammation.",
    "Microcalcifications are not identified.",
)
_HEADERS = (("GROSS DESCRIPTION:", "MICROSCOPIC DESCRIPTION:", "DIAGNOSIS:"), ("", "", ""))
_ADDENDUM = (
    "ADDENDUM: Additional immunostains were performed; results do not alter the diagnosis.",
    "Addendum: the case was shown to a second pathologist, who agrees.",
    "ADDENDUM REPORT: Molecular testing has been sent to the reference laboratory.",
    "Addendum: block {c} was submitted for additional studies.",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _fillers(rng: np.random.Generator, k: int) -> list[str]:
    """``k`` distinct filler sentences."""
    a, b, c = (int(v) for v in rng.integers(1, 12, size=3))
    picked = rng.choice(len(_FILLER), size=k, replace=False)
    return [_FILLER[int(j)].format(a=a, b=b, c=c) for j in picked]


def _findings(
    rng: np.random.Generator,
    grade: int,
    margin_positive: bool,
    lvi: bool,
    nodes_positive: int,
    nodes_examined: int,
) -> list[str]:
    g, k, n = int(grade), int(nodes_positive), int(nodes_examined)
    words = _NUMBER_WORDS + [str(i) for i in range(len(_NUMBER_WORDS), 100)]
    grade_s = _pick(rng, _GRADE).format(g=g, w=_GRADE_WORDS[g], r=_ROMAN[g])
    mm = round(float(rng.uniform(0.5, 15.0)), 1)
    margin_s = _pick(rng, _MARGIN_POS if margin_positive else _MARGIN_NEG).format(mm=mm)
    lvi_s = _pick(rng, _LVI_POS if lvi else _LVI_NEG)
    nodes_t = _NODES if k > 0 or rng.random() < 0.4 else _NODES_ZERO
    nodes_s = _pick(rng, nodes_t).format(k=k, n=n, K=words[k].capitalize(), N=words[n])
    return [grade_s, margin_s, lvi_s, nodes_s]


def report_sentences(
    rng: np.random.Generator,
    grade: int,
    margin_positive: bool,
    lvi: bool,
    nodes_positive: int,
    nodes_examined: int,
) -> tuple[str, str, list[tuple[str, str]]]:
    """:func:`make_report` with the role of every sentence: ``(text, report_type, sentences)``.

    ``sentences`` lists ``(sentence, role)`` in the order written (section headers excluded),
    role one of :data:`SIGNAL_ROLES` or ``"filler"``. It draws exactly what :func:`make_report`
    draws, so the text is the same for the same generator state.
    """
    findings = _findings(rng, grade, margin_positive, lvi, nodes_positive, nodes_examined)
    role = dict(zip(findings, SIGNAL_ROLES, strict=True))
    findings = [findings[i] for i in rng.permutation(len(findings))]
    n_gross, n_micro = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    fillers = _fillers(rng, n_gross + n_micro)
    gross, micro = fillers[:n_gross], findings[:2] + fillers[n_gross:]
    micro = [micro[i] for i in rng.permutation(len(micro))]
    diagnosis = findings[2:]
    headers = _HEADERS[int(rng.integers(len(_HEADERS)))]
    sections = []
    for header, body in zip(headers, (gross, micro, diagnosis), strict=True):
        text = " ".join(body)
        sections.append(f"{header} {text}" if header else text)
    report_type = REPORT_TYPES[int(rng.integers(len(REPORT_TYPES)))]
    written = [(s, role.get(s, "filler")) for s in (*gross, *micro, *diagnosis)]
    return "\n".join(sections), report_type, written


def make_report(
    rng: np.random.Generator,
    grade: int,
    margin_positive: bool,
    lvi: bool,
    nodes_positive: int,
    nodes_examined: int,
) -> tuple[str, str]:
    """One pathology report stating the four findings in varied wording and order.

    Parameters
    ----------
    rng : numpy Generator (the patient's own stream, so reports do not depend on cohort order).
    grade : histologic grade in {1, 2, 3}.
    margin_positive, lvi : margin status and lymphovascular invasion.
    nodes_positive, nodes_examined : positive and examined lymph nodes (0 <= positive <= examined).

    Returns
    -------
    (text, report_type) : the report (sections separated by newlines) and one of
    :data:`REPORT_TYPES`.
    """
    text, report_type, _ = report_sentences(
        rng, grade, margin_positive, lvi, nodes_positive, nodes_examined
    )
    return text, report_type


def addendum_sentences(rng: np.random.Generator) -> tuple[str, list[tuple[str, str]]]:
    """:func:`make_addendum` with its sentences and roles (``"addendum"``, ``"filler"``)."""
    c = int(rng.integers(1, 12))
    written = [(_pick(rng, _ADDENDUM).format(c=c), "addendum"), (_fillers(rng, 1)[0], "filler")]
    return " ".join(s for s, _ in written), written


def make_addendum(rng: np.random.Generator) -> str:
    """An addendum with no prognostic content (a second report row for some patients)."""
    return addendum_sentences(rng)[0]


def signal_spans(sentences: Iterable[str], written: Iterable[tuple[str, str]]) -> np.ndarray:
    """Which of a patient's ``sentences`` state a finding, by the generator's ground truth.

    Parameters
    ----------
    sentences : the patient's report sentences as an explanation cut them (each a substring of
        the report; a section header may lead one, a ``;`` may split a written sentence).
    written : ``(sentence, role)`` the generator wrote for the patient (``report_sentences.csv``).

    Returns
    -------
    (n,) bool: True where the sentence, without a leading section header, and a written sentence
    whose role is in :data:`SIGNAL_ROLES` contain one another.
    """
    signal = [s for s, role in written if role in SIGNAL_ROLES]
    headers = tuple(f"{h} " for h in _HEADERS[0])
    out = []
    for s in map(str, sentences):
        body = next((s[len(h) :] for h in headers if s.startswith(h)), s)
        out.append(any(w in body or body in w for w in signal))
    return np.array(out, dtype=bool)
