"""Synthetic cohort written in the TCGA folder layout, with a known ground truth.

:func:`write_tcga_cohort` writes a folder that :meth:`Cohort.load` reads as a TCGA cancer folder
(:mod:`multimodal.data.tcga_tables`), with the columns and spellings of the real files:
``clinical.csv``, ``genomics.csv.gz`` (``<GENE>_rnaseq`` / ``_cnv`` / ``_mut``),
``reports_structured.csv`` ("Key: value" lines), ``reports.csv`` (raw report text) and the
published-style folds ``splits/porpoise_mcat_5fold/fold_<k>.csv``. Beside them, and ignored by
the loader: ``truth.csv`` (the true log-hazard of death and its parts, per patient),
``truth_features.csv`` (the genomic columns that act) and ``README.txt``.

The generative model
--------------------
The log-hazard of death is the sum of four parts (columns of ``truth.csv``):

- ``log_hazard_clinical``: age, sex and the true stage I-IV. About 4 % of patients have their stage
  unrecorded in clinical.csv (``[Not Available]``, ``Stage X``, ``[Discrepancy]``); it acts anyway.
- ``log_hazard_genomics_main``: three expression columns, one mutation and one copy-number column,
  the same in every stage.
- ``log_hazard_genomics_interaction``: a six-gene expression signature (genes sharing one latent
  programme) that acts in stage III/IV patients only. A linear Cox model on the genomic columns
  averages its effect over stages; an interaction with stage or a tree model can recover it.
- ``log_hazard_report``: lymphovascular invasion, positive margins, poor differentiation and
  necrosis. They are independent of everything else, so only the reports carry them. The
  structured reports (about 90 % of patients) and the raw text (about 20 %) state each finding in
  several phrasings, many negated ("No lymphovascular invasion present", "Not well
  differentiated", "Not involved by carcinoma"): a bag of words that ignores negation is misled.

Death times are Weibull (months) given the log-hazard; censoring is independent (end of study at
6-140 months, plus drop-out), leaving about 55-60 % of patients censored. Progression (the CDR PFI
columns) has a Weibull hazard with the same log-hazard and a shorter scale; death counts as an
event there too.

Measured on 20,000 patients (seeds 0 and 1), Harrell's C of the true log-hazard is 0.78; of its
parts alone: clinical 0.67, genomics 0.68 (main effects 0.59, stage interaction 0.65), report 0.61.
Leaving a part out of the truth costs: clinical 0.055, stage interaction 0.05, report 0.03, genomic
main effects 0.02. Cox fits on half and scored on the other half: clinical columns 0.67; + the
eleven acting genomic columns, linear, 0.72; + signature x stage III/IV 0.74. With 600 patients
(seeds 0-4) the true C is 0.77-0.79 and 55-58 % of patients are censored.

Every random draw comes from a stream keyed by ``(seed, stream[, patient])``: the same seed writes
the same bytes (the gzip header carries no time stamp).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.exceptions import DataError

__all__ = ["SPLIT_NAME", "TRUTH_PARTS", "write_tcga_cohort"]

log = logging.getLogger(__name__)

#: Name of the fold set written under ``splits/``.
SPLIT_NAME = "porpoise_mcat_5fold"
#: The parts of the true log-hazard (columns of ``truth.csv``; they add up to ``true_log_hazard``).
TRUTH_PARTS = (
    "log_hazard_clinical",
    "log_hazard_genomics_main",
    "log_hazard_genomics_interaction",
    "log_hazard_report",
)
_N_FOLDS = 5
# Names of the per-purpose random streams (their index keys the generator; append, never reorder).
_STREAMS = tuple("clinical genomics report outcome coverage text split site table outside".split())
_DAYS_PER_MONTH = 30.44  # what the PORPOISE tables divided the CDR OS days by

_STAGES = ("I", "II", "III", "IV")
_STAGE_P = (0.22, 0.33, 0.28, 0.17)
_STAGE_LOG_HR = (-0.75, -0.2, 0.5, 1.15)
_SUBSTAGES = (("I", "IA", "IB"), ("II", "IIA", "IIB"), ("III", "IIIA", "IIIB", "IIIC"), ("IV",))
_UNSTAGED = ("[Not Available]", "Stage X", "[Discrepancy]")
_STAGE_MISSING = 0.04
_AGE_LOG_HR = 0.025  # per year above 60
_MALE_LOG_HR = 0.1
_SITES = ("XA", "XB", "XC", "XD", "XE", "XF", "XG", "XH")
_RACES = ("WHITE", "BLACK OR AFRICAN AMERICAN", "ASIAN", "[Not Available]")
_RACE_P = (0.78, 0.1, 0.08, 0.04)
_HISTOLOGY = tuple(
    "Adenocarcinoma|Adenocarcinoma, not otherwise specified|Papillary adenocarcinoma|"
    "Mucinous adenocarcinoma|Adenosquamous carcinoma".split("|")
)

_SIGNATURE_LOADING = 0.8  # correlation of each signature gene with its programme
_SIGNATURE_LOG_HR = (0.0, 0.0, 1.0, 1.0)  # per SD of the signature score, by true stage
_MAIN_RNA_LOG_HR = (0.25, -0.2, 0.15)  # per SD
_MUT_LOG_HR, _MUT_FREQ = 0.35, 0.2
_CNV_LOG_HR = 0.15  # per copy-number level (-2..2)
_CNV_P = (0.04, 0.16, 0.6, 0.15, 0.05)

_LVI_LOG_HR, _LVI_P = 0.8, 0.3
_MARGIN_LOG_HR, _MARGIN_P = 0.6, 0.15
_DIFFERENTIATION_LOG_HR = (0.0, 0.2, 0.75)  # well, moderately, poorly
_DIFFERENTIATION_P = (0.3, 0.42, 0.28)
_NECROSIS_LOG_HR, _NECROSIS_P = 0.3, 0.35

_WEIBULL = (1.1, 190.0)  # shape, scale (months) at log-hazard 0: death
_PFI_WEIBULL = (1.0, 110.0)  # progression
_END_OF_STUDY = (6.0, 140.0)  # months after diagnosis, uniform
_DROPOUT_MEAN = 150.0  # months

# -- report phrasings: several per finding, many negated, as in the LLM-extracted real files.
# One entry per finding; "|" separates the phrasings (a phrasing listed twice is drawn twice as often).
_PHRASES = {
    "lvi_yes": "Present|Yes|Lymphovascular invasion present|Focal lymphovascular invasion present|"
    "Angiolymphatic invasion present|Identified",
    "lvi_no": "Absent|No|Not identified|No lymphovascular invasion|No lymphovascular invasion present|"
    "No lymphovascular invasion identified|Lymphovascular invasion not identified|"
    "Absence of lymphovascular invasion|Not present",
    "margin_yes": "R1, indicates positive margins|R1, indicates positive margins|"
    "R2, indicates positive margins|Involved by carcinoma|Carcinoma present at inked margin",
    "margin_no": "R0, indicates negative margins|R0, indicates negative margins|"
    "R0, indicates negative margins|Not involved by carcinoma|No carcinoma present at inked margin",
    "well": "Well-differentiated|Well differentiated|Well-differentiated, not poorly differentiated",
    "moderate": "Moderately differentiated|Well to moderately differentiated|Not well differentiated",
    "poor": "Poorly differentiated|Moderately to poorly differentiated|"
    "Poorly differentiated, high grade",
    "grade_1": "Grade 1|G1",
    "grade_2": "Grade 2|G2",
    "grade_3": "Grade 3|G3|High grade",
    "necrosis_yes": "Necrosis present|Present|Extensive necrosis|Focal necrosis present",
    "necrosis_no": "No necrosis|Absent|Necrosis absent|No necrosis present|None",
    "necrosis_unknown": "Necrosis not described|No necrosis described|Not mentioned",
    "subtype": "Acinar predominant|Solid predominant|Papillary predominant|Mixed subtype",
    "tils": "Present|Absent|Brisk|Non-brisk|Not described|Mild",
    "ihc": "TTF-1 positive; Napsin A positive|CK7 positive, CK20 negative|p40 negative",
    # raw report sentences (upper case, like the OCR'd TCGA reports)
    "raw_lvi_yes": "ANGIOLYMPHATIC INVASION IS PRESENT.|LYMPHOVASCULAR INVASION: IDENTIFIED.",
    "raw_lvi_no": "NO EVIDENCE OF ANGIOLYMPHATIC OR PERINEURAL INVASION IS PRESENT.|"
    "LYMPHOVASCULAR INVASION: NOT IDENTIFIED.",
    "raw_margin_yes": "CARCINOMA IS PRESENT AT THE RESECTION MARGIN.|MARGINS: INVOLVED BY CARCINOMA.",
    "raw_margin_no": "ALL SURGICAL MARGINS ARE FREE OF INVASIVE CARCINOMA.|MARGINS: NOT INVOLVED.",
    "raw_necrosis_yes": "TUMOR NECROSIS IS PRESENT.|FOCAL TUMOR NECROSIS IS SEEN.",
    "raw_necrosis_no": "NO TUMOR NECROSIS IS IDENTIFIED.|NECROSIS: NOT PRESENT.",
    "raw_filler": "SECTIONS SHOW BENIGN BACKGROUND TISSUE WITH MILD CHRONIC INFLAMMATION.|"
    "SEE SYNOPTIC REPORT BELOW.|NO EVIDENCE OF NEOPLASIA IN THE SEPARATELY SUBMITTED BIOPSY.|"
    "THE SPECIMEN IS RECEIVED FRESH AND LABELED WITH THE PATIENT'S NAME.",
}
_DIFFERENTIATION = ("well", "moderate", "poor")


def _rng(seed: int, stream: str, patient: int | None = None) -> np.random.Generator:
    key = [seed, _STREAMS.index(stream)] + ([] if patient is None else [patient])
    return np.random.default_rng(key)


def _pick(rng: np.random.Generator, options: tuple | str) -> str:
    """A random one of ``options``, or of the phrasings of ``_PHRASES[options]``."""
    if isinstance(options, str):
        options = _PHRASES[options].split("|")
    return options[int(rng.integers(len(options)))]


@dataclass
class _Latents:
    """Everything drawn about the patients (in generation order)."""

    ids: list[str]
    sites: np.ndarray
    clinical: pd.DataFrame  # age, sex, true stage index
    genomics: pd.DataFrame  # the written table, without patient_id
    signature: np.ndarray  # unit-variance score of the six signature genes
    features: pd.DataFrame  # truth_features.csv
    findings: pd.DataFrame  # lvi, margin (0/1/2 = R0/R1/R2), differentiation (0-2), necrosis
    parts: pd.DataFrame  # TRUTH_PARTS


def _barcode(site: str, i: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    code = "".join(digits[(i // 36**k) % 36] for k in (3, 2, 1, 0))
    return f"TCGA-{site}-{code}"  # 12 characters, like a TCGA patient barcode


def _clinical_latents(seed: int, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = _rng(seed, "clinical")
    frame = pd.DataFrame(
        {
            "age": np.clip(rng.normal(61.0, 11.0, n), 26, 90).round().astype(int),
            "sex": np.where(rng.random(n) < 0.5, "F", "M"),
            "stage_index": rng.choice(len(_STAGES), size=n, p=_STAGE_P),
        }
    )
    part = (
        _AGE_LOG_HR * (frame["age"].to_numpy() - 60)
        + _MALE_LOG_HR * (frame["sex"].to_numpy() == "M")
        + np.asarray(_STAGE_LOG_HR)[frame["stage_index"].to_numpy()]
    )
    return frame, part


def _gene_names(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct made-up gene symbols (``SG`` + four digits), sorted like the real columns."""
    return [f"SG{j:04d}" for j in sorted(rng.choice(10_000, size=count, replace=False))]


def _genomics(seed: int, n: int, n_features: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """The genomics table, the signature score and the acting columns (``truth_features.csv``)."""
    rng = _rng(seed, "genomics")
    n_rna, n_cnv = round(n_features * 2 / 3), round(n_features / 5)
    n_mut = n_features - n_rna - n_cnv
    names = _gene_names(rng, n_features)
    rna_cols = [f"{g}_rnaseq" for g in names[:n_rna]]
    cnv_cols = [f"{g}_cnv" for g in names[n_rna : n_rna + n_cnv]]
    mut_cols = [f"{g}_mut" for g in names[n_rna + n_cnv :]]
    # noise expression: z-scored log-normals of varied skew (real RNA-seq z-scores are skewed)
    s = rng.uniform(0.1, 0.8, n_rna)
    raw = np.exp(s * rng.standard_normal((n, n_rna)))
    rna = (raw - np.exp(s**2 / 2)) / np.sqrt((np.exp(s**2) - 1) * np.exp(s**2))
    acting = rng.choice(n_rna, size=9, replace=False)
    sig, main = acting[:6], acting[6:]
    a = _SIGNATURE_LOADING
    programme = rng.standard_normal(n)
    rna[:, sig] = a * programme[:, None] + math.sqrt(1 - a**2) * rng.standard_normal((n, 6))
    rna[:, main] = rng.standard_normal((n, 3))
    cnv = rng.choice(np.arange(-2, 3), size=(n, n_cnv), p=_CNV_P)
    mut = (rng.random((n, n_mut)) < rng.uniform(0.01, 0.15, n_mut)).astype(int)
    mut_act, cnv_act = int(rng.integers(n_mut)), int(rng.integers(n_cnv))
    mut[:, mut_act] = (rng.random(n) < _MUT_FREQ).astype(int)
    table = pd.concat(
        [
            pd.DataFrame(rna.round(4), columns=rna_cols),
            pd.DataFrame(cnv, columns=cnv_cols),
            pd.DataFrame(mut, columns=mut_cols),
        ],
        axis=1,
    )
    # the score from the written (rounded) values: a model can reach the truth exactly
    sd = math.sqrt(a**2 + (1 - a**2) / 6)
    signature = table[[rna_cols[j] for j in sig]].to_numpy().mean(axis=1) / sd
    features = pd.DataFrame(
        [(rna_cols[j], "signature", _SIGNATURE_LOG_HR[-1] / 6 / sd, "stage III/IV") for j in sig]
        + [(rna_cols[j], "main", b, "all") for j, b in zip(main, _MAIN_RNA_LOG_HR, strict=True)]
        + [(mut_cols[mut_act], "main", _MUT_LOG_HR, "all")]
        + [(cnv_cols[cnv_act], "main", _CNV_LOG_HR, "all")],
        columns=["column", "role", "log_hazard_ratio", "stages"],
    )
    return table, signature, features


def _genomics_main(table: pd.DataFrame, features: pd.DataFrame) -> np.ndarray:
    main = features[features["role"] == "main"]
    return table[main["column"].tolist()].to_numpy(float) @ main["log_hazard_ratio"].to_numpy()


def _findings(seed: int, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = _rng(seed, "report")
    positive = rng.random(n) < _MARGIN_P
    frame = pd.DataFrame(
        {
            "lymphovascular_invasion": rng.random(n) < _LVI_P,
            "margin": np.where(positive, np.where(rng.random(n) < 0.15, 2, 1), 0),
            "differentiation": rng.choice(3, size=n, p=_DIFFERENTIATION_P),
            "necrosis": rng.random(n) < _NECROSIS_P,
        }
    )
    part = (
        _LVI_LOG_HR * frame["lymphovascular_invasion"].to_numpy()
        + _MARGIN_LOG_HR * (frame["margin"].to_numpy() > 0)
        + np.asarray(_DIFFERENTIATION_LOG_HR)[frame["differentiation"].to_numpy()]
        + _NECROSIS_LOG_HR * frame["necrosis"].to_numpy()
    )
    return frame, part


def _simulate(seed: int, n: int, n_features: int) -> _Latents:
    clinical, clinical_part = _clinical_latents(seed, n)
    table, signature, features = _genomics(seed, n, n_features)
    findings, report_part = _findings(seed, n)
    interaction = np.asarray(_SIGNATURE_LOG_HR)[clinical["stage_index"].to_numpy()] * signature
    values = (clinical_part, _genomics_main(table, features), interaction, report_part)
    parts = pd.DataFrame(dict(zip(TRUTH_PARTS, values, strict=True)))
    sites = _rng(seed, "site").choice(_SITES, size=n)
    ids = [_barcode(site, i) for i, site in enumerate(sites)]
    return _Latents(ids, sites, clinical, table, signature, features, findings, parts)


def _outcomes(seed: int, log_hazard: np.ndarray) -> pd.DataFrame:
    """OS and PFI as the CDR gives them (days) and as PORPOISE (months)."""
    rng = _rng(seed, "outcome")
    n = len(log_hazard)
    risk = np.exp(-log_hazard)
    death = _WEIBULL[1] * (rng.exponential(size=n) * risk) ** (1 / _WEIBULL[0])
    progression = _PFI_WEIBULL[1] * (rng.exponential(size=n) * risk) ** (1 / _PFI_WEIBULL[0])
    censor = np.minimum(rng.uniform(*_END_OF_STUDY, n), rng.exponential(_DROPOUT_MEAN, n))
    event = death <= censor
    os_days = np.maximum(np.ceil(np.minimum(death, censor) * _DAYS_PER_MONTH), 1).astype(int)
    prog_days = np.maximum(np.ceil(progression * _DAYS_PER_MONTH), 1).astype(int)
    first = prog_days < os_days
    return pd.DataFrame(
        {
            "survival_months": (os_days / _DAYS_PER_MONTH).round(2),
            "event": event.astype(int),
            "censorship": 1 - event.astype(int),
            "cdr_os_event": event.astype(float),
            "cdr_os_days": os_days.astype(float),
            "cdr_pfi_event": (first | event).astype(float),
            "cdr_pfi_days": np.where(first, prog_days, os_days).astype(float),
        }
    )


def _ajcc_stage(rng: np.random.Generator, stage_index: np.ndarray) -> tuple[list[str], list]:
    """clinical.csv's ``ajcc_pathologic_stage`` and coarse ``stage`` (empty when unrecorded)."""
    ajcc, coarse = [], []
    for s in stage_index:
        if rng.random() < _STAGE_MISSING:
            ajcc.append(_pick(rng, _UNSTAGED))
            coarse.append(None)
        else:
            ajcc.append("Stage " + _pick(rng, _SUBSTAGES[s]))
            coarse.append(_STAGES[s])
    return ajcc, coarse


def _clinical_table(
    seed: int, lat: _Latents, outcomes: pd.DataFrame, raw: np.ndarray
) -> pd.DataFrame:
    """clinical.csv: the columns of the real files the loader and users look at (no grade: the
    reports alone carry differentiation)."""
    rng = _rng(seed, "table")
    n = len(lat.ids)
    ajcc, coarse = _ajcc_stage(rng, lat.clinical["stage_index"].to_numpy())
    os_cols = ["cdr_os_event", "cdr_os_days", "cdr_pfi_event", "cdr_pfi_days"]
    head = outcomes[["survival_months", "event", "censorship"]]
    columns = {
        "age": lat.clinical["age"],
        "sex": lat.clinical["sex"],
        "is_female": (lat.clinical["sex"] == "F").astype(int),
        "tss_site": lat.sites,
        "n_slides": 1 + (rng.random(n) < 0.08),
        "oncotree_code": "SYN",
        "cdr_type": "SYN",
        "ajcc_pathologic_stage": ajcc,
        "clinical_stage": "[Not Applicable]",
        "stage": coarse,
        "histological_type": [_pick(rng, _HISTOLOGY) for _ in range(n)],
        "race": rng.choice(_RACES, size=n, p=_RACE_P),
    }
    return pd.concat(
        [pd.DataFrame({"patient_id": lat.ids}), head, pd.DataFrame(columns), outcomes[os_cols]],
        axis=1,
    ).assign(has_report_text=raw.astype(int))


def _yes_no(finding: object, key: str) -> str:
    return f"{key}_yes" if finding else f"{key}_no"


def _structured_report(rng: np.random.Generator, f: dict, histology: str) -> str:
    """The "Key: value" lines of one patient (optional keys left out at rates like the real files)."""
    diff = int(f["differentiation"])
    grade = diff if rng.random() < 0.85 else int(np.clip(diff + _pick(rng, (-1, 1)), 0, 2))
    necrosis = _yes_no(f["necrosis"], "necrosis") if rng.random() < 0.8 else "necrosis_unknown"
    margin = (
        _yes_no(f["margin"], "margin") if f["margin"] < 2 else ("R2, indicates positive margins",)
    )
    lines = [
        ("Differentiation of the lesion", _DIFFERENTIATION[diff], 0.97),
        ("Margins of the excised tissue", margin, 0.9),
        ("Histological classification or type of cancer", (histology,), 1.0),
        ("Cancer subtype", "subtype", 0.5),
        ("Description of any necrosis", necrosis, 0.6),
        ("Histological grade", f"grade_{grade + 1}", 0.9),
        ("Lymphovascular invasion", _yes_no(f["lymphovascular_invasion"], "lvi"), 0.85),
        ("Tumor-infiltrating lymphocytes", "tils", 0.4),
        ("Results of immunohistochemistry (IHC)", "ihc", 0.25),
    ]
    return "\n".join(f"{key}: {_pick(rng, values)}" for key, values, p in lines if rng.random() < p)


def _raw_report(rng: np.random.Generator, f: dict, histology: str, age: int, sex: str) -> str:
    """Upper-case raw report text stating the same findings in other words."""
    diff = ("WELL", "MODERATELY", "POORLY")[int(f["differentiation"])]
    sentences = [
        f"PATIENT HISTORY: {age} YEAR OLD {'WOMAN' if sex == 'F' else 'MAN'}.",
        "PROCEDURE: RESECTION.",
        f"FINAL DIAGNOSIS: INVASIVE {histology.upper()}, {diff} DIFFERENTIATED.",
        f"THE TUMOR MEASURES {rng.uniform(0.8, 7.5):.1f} CM IN GREATEST DIMENSION.",
        _pick(rng, "raw_" + _yes_no(f["lymphovascular_invasion"], "lvi")),
        _pick(rng, "raw_" + _yes_no(f["margin"], "margin")),
        _pick(rng, "raw_" + _yes_no(f["necrosis"], "necrosis")),
        _pick(rng, "raw_filler"),
    ]
    return " ".join(sentences)


def _reports(
    seed: int, lat: _Latents, clinical: pd.DataFrame, structured: np.ndarray, raw: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """reports_structured.csv (with a few rows of patients outside the cohort, as in the real
    files) and reports.csv, both sorted by patient_id."""
    rows_s, rows_r = [], []
    findings = lat.findings.to_dict("records")
    for i, pid in enumerate(lat.ids):
        rng = _rng(seed, "text", i)
        f, histology = findings[i], clinical["histological_type"].iat[i]
        text_s = _structured_report(rng, f, histology)
        text_r = _raw_report(rng, f, histology, int(clinical["age"].iat[i]), clinical["sex"].iat[i])
        if structured[i]:
            rows_s.append((pid, text_s, 1))
        if raw[i]:
            summary = "Synthetic report; see the text for the findings."
            rows_r.append((pid, text_r, summary, "synthetic (multimodal.data.synth_tcga)"))
    rng = _rng(seed, "outside")
    plain = {"lymphovascular_invasion": False, "margin": 0, "differentiation": 1, "necrosis": False}
    for j in range(max(1, len(lat.ids) // 60)):
        rows_s.append((f"TCGA-ZZ-{j:04d}", _structured_report(rng, plain, _HISTOLOGY[0]), 0))
    structured_frame = pd.DataFrame(rows_s, columns=["patient_id", "text_structured", "in_cohort"])
    raw_frame = pd.DataFrame(rows_r, columns=["patient_id", "text", "summary_llm", "source"])
    return structured_frame.sort_values("patient_id"), raw_frame.sort_values("patient_id")


def _fold_index(seed: int, event: np.ndarray) -> np.ndarray:
    """Validation fold of each patient: 5 folds stratified by event, deterministic for the seed."""
    rng = _rng(seed, "split")
    fold = np.empty(len(event), dtype=int)
    start = 0
    for flag in (False, True):
        idx = np.flatnonzero(event == flag)
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = (start + np.arange(len(idx))) % _N_FOLDS
        start += len(idx)  # the event group continues where the censored one stopped
    return fold


def _write_folds(folder: Path, ids: list[str], fold: np.ndarray) -> None:
    """``fold_<k>.csv``: patient_id, split; training rows first, each block sorted (as PORPOISE)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids_arr = np.asarray(ids)
    for k in range(_N_FOLDS):
        train, val = sorted(ids_arr[fold != k]), sorted(ids_arr[fold == k])
        frame = pd.DataFrame(
            {"patient_id": train + val, "split": ["train"] * len(train) + ["val"] * len(val)}
        )
        frame.to_csv(folder / f"fold_{k}.csv", index=False)


def _readme(seed: int, n: int, lat: _Latents) -> str:
    features = "\n".join(
        f"    {r.column}: {r.role}, log-HR {r.log_hazard_ratio:+.3f} per unit ({r.stages})"
        for r in lat.features.itertuples()
    )
    return f"""SYNTHETIC DATA -- not from TCGA; no real patient is described here.

Written by multimodal.data.synth_tcga.write_tcga_cohort(n_patients={n}, seed={seed}).
The files follow the TCGA folder layout that `multimodal` reads (clinical.csv, genomics.csv.gz,
reports_structured.csv, reports.csv, splits/{SPLIT_NAME}/fold_<k>.csv).
The loader ignores this file, truth.csv and truth_features.csv.

Ground truth (truth.csv): true_log_hazard is the sum of
  {", ".join(TRUTH_PARTS)}.
  clinical: {_AGE_LOG_HR} per year of age above 60, {_MALE_LOG_HR} for men, stage I-IV
    {_STAGE_LOG_HR} (true_stage; clinical.csv leaves about 4 % of stages unrecorded)
  genomics (truth_features.csv): main effects, and a six-gene signature acting in stage III/IV only
{features}
  report (only in the reports): lymphovascular invasion {_LVI_LOG_HR}, positive margin
    {_MARGIN_LOG_HR}, differentiation well/moderate/poor {_DIFFERENTIATION_LOG_HR},
    necrosis {_NECROSIS_LOG_HR}

Train on it:
  multimodal train --config configs/tcga.yaml --cohort <this folder> --out runs/synth_tcga
"""


def _check_args(n_patients: int, seed: int, n_features: int, fractions: dict[str, float]) -> None:
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 30:
        raise DataError(
            f"n_patients must be an integer >= 30 (5 folds need events); got {n_patients!r}"
        )
    if n_patients > 36**4:  # the barcodes' four base-36 digits
        raise DataError(f"n_patients must be <= {36**4}; got {n_patients}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative integer; got {seed!r}")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 30:
        raise DataError(f"n_genomic_features must be an integer >= 30; got {n_features!r}")
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{name} must be in [0, 1]; got {value!r}")


def write_tcga_cohort(
    out: str | Path,
    n_patients: int = 600,
    seed: int = 0,
    n_genomic_features: int = 300,
    report_structured_fraction: float = 0.9,
    report_fraction: float = 0.2,
) -> Path:
    """Write a synthetic cohort in the TCGA folder layout, with its ground truth.

    Parameters
    ----------
    out : folder to write (created; files of an earlier call are overwritten). Its name becomes
        the cohort's (``tcga-<name>``).
    n_patients : number of patients (>= 30).
    seed : seed of every random draw; the same seed writes the same bytes.
    n_genomic_features : columns of ``genomics.csv.gz`` (2/3 ``_rnaseq``, 1/5 ``_cnv``, the rest
        ``_mut``); 9 expression, 1 copy-number and 1 mutation column act (``truth_features.csv``).
    report_structured_fraction, report_fraction : share of patients with a structured report
        (``reports_structured.csv``) and with raw report text (``reports.csv``), drawn at random.
        Outcomes do not depend on them.

    Returns
    -------
    Path -- the folder; ``Cohort.load(folder)`` reads it with the modalities ``clinical``,
    ``genomics``, ``report`` and ``report_structured`` (a report modality whose fraction leaves no
    patient is not written).

    Raises
    ------
    DataError
        Arguments out of range, or ``out`` holding a cohort manifest (the loader would read that).
    """
    fractions = {
        "report_structured_fraction": report_structured_fraction,
        "report_fraction": report_fraction,
    }
    _check_args(n_patients, seed, n_genomic_features, fractions)
    folder = Path(out)
    if any((folder / name).exists() for name in ("cohort.yaml", "cohort.yml", "cohort.json")):
        raise DataError(
            f"{folder} holds a cohort manifest; write the TCGA layout into another folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    lat = _simulate(seed, n_patients, n_genomic_features)
    log_hazard = lat.parts.sum(axis=1).to_numpy()
    outcomes = _outcomes(seed, log_hazard)
    coverage = _rng(seed, "coverage").random((n_patients, 2))
    structured, raw = coverage[:, 0] < report_structured_fraction, coverage[:, 1] < report_fraction
    clinical = _clinical_table(seed, lat, outcomes, raw)
    order = np.argsort(lat.ids, kind="stable")  # the real tables are sorted by patient_id
    clinical.iloc[order].to_csv(folder / "clinical.csv", index=False)
    genomics = pd.concat([pd.DataFrame({"patient_id": lat.ids}), lat.genomics], axis=1)
    genomics.iloc[order].to_csv(
        folder / "genomics.csv.gz", index=False, compression={"method": "gzip", "mtime": 0}
    )
    reports_s, reports_r = _reports(seed, lat, clinical, structured, raw)
    for frame, present, name in (
        (reports_s, structured, "reports_structured.csv"),
        (reports_r, raw, "reports.csv"),
    ):
        if present.any():
            frame.to_csv(folder / name, index=False)
        else:  # a file without cohort patients would be a modality without data
            (folder / name).unlink(missing_ok=True)
    _write_folds(
        folder / "splits" / SPLIT_NAME,
        lat.ids,
        _fold_index(seed, outcomes["event"].to_numpy() == 1),
    )
    truth = _truth_table(lat, log_hazard, structured, raw)
    truth.iloc[order].to_csv(folder / "truth.csv", index=False)
    lat.features.to_csv(folder / "truth_features.csv", index=False)
    (folder / "README.txt").write_text(_readme(seed, n_patients, lat))
    log.info("synthetic TCGA-layout cohort of %d patients written to %s", n_patients, folder)
    return folder


def _truth_table(
    lat: _Latents, log_hazard: np.ndarray, structured: np.ndarray, raw: np.ndarray
) -> pd.DataFrame:
    stage = np.asarray(_STAGES)[lat.clinical["stage_index"].to_numpy()]
    truth = pd.DataFrame({"patient_id": lat.ids, "true_log_hazard": log_hazard.round(6)})
    truth[list(TRUTH_PARTS)] = lat.parts.round(6) + 0.0  # + 0.0: no "-0.0" in the file
    truth["true_stage"] = stage
    truth["signature_score"] = lat.signature.round(6)
    truth["lymphovascular_invasion"] = lat.findings["lymphovascular_invasion"].astype(int)
    truth["margin"] = np.asarray(("R0", "R1", "R2"))[lat.findings["margin"].to_numpy()]
    truth["differentiation"] = np.asarray(("well", "moderate", "poor"))[
        lat.findings["differentiation"].to_numpy()
    ]
    truth["necrosis"] = lat.findings["necrosis"].astype(int)
    truth["has_report_structured"] = structured.astype(int)
    truth["has_report"] = raw.astype(int)
    return truth
