"""Synthetic multimodal oncology cohort with a known proportional-hazards ground truth.

:func:`generate_cohort` writes a cohort manifest (``cohort.yaml``, format of
``docs/architecture.md``) with the modalities ``clinical``, ``genomics``, ``report`` (text),
``ct`` (imaging) and optionally ``wsi`` (feature bags), a ``patients.csv`` with overall survival,
progression-free survival and competing-risk event types, a ``ground_truth.csv`` with the
log-hazard used and its per-modality components, and a ``report_sentences.csv`` naming the role of
every report sentence (the findings that carry the text signal, or filler).

The generative model
--------------------
Each modality carries a latent risk component ``r_k`` (unit variance):

- clinical: age, sex and stage;
- genomics: the mean expression of three of nine pathway groups (genes within a pathway are
  correlated; a tenth group of background genes is noise; a fourth pathway drives progression only);
- report: grade, margin status, lymphovascular invasion and positive node count, written in varied
  templates with filler sentences (:mod:`multimodal.data.synth_text`);
- ct: size and texture amplitude of a bright ellipsoid lesion at a random position and orientation;
- wsi (optional): the fraction of informative ("tumour") patches in bags of patch features.

As in real tumours, the modalities are not independent: a shared latent *tumour burden* drives the
stage, the lesion's size, the number of positive nodes and the cell-cycle pathway (``_BURDEN``:
correlations 0.8, 0.8, 0.8 and 0.6 with those features), so the components correlate by about
0.15-0.35 and a patient's missing modality is partly predictable from the others. Every modality
still carries signal no other has (age, sex, grade, margins, invasion, texture, the other pathways).

The log-hazard of death is ``true_risk = c * sum_k w_k r_k`` with weights ``_COMPONENT_WEIGHTS``
(clinical 1.5, the others 1) and ``c`` scaling its population SD to ``signal_strength``, with a
Weibull baseline (months), so fusing modalities beats any single one.
:func:`reachable_risk` gives the expected true risk given the modalities a patient has: the most any
model can reach. Progression has its own Weibull hazard with log-hazard
``true_pfs_risk = 0.7 * true_risk + 0.6 * z_pfs``. Censoring is independent: administrative
(site-specific follow-up) plus random drop-out. Outcomes never depend on which files are written
(``with_images``, ``missing_rate``), only on ``seed`` and ``with_feature_bags``.

With ``longitudinal=True`` (:mod:`multimodal.data.synth_longitudinal`) the cohort gains the modality
``labs`` (kind ``longitudinal``, ``longitudinal.csv``): repeat measurements of biomarkers whose
true trajectories ``m_k(t)`` drive a time-varying hazard of death
``h0(t) * exp(true_risk + sum_k gamma_k * m_k(t))``, with ``true_risk`` (and its components) scaled
by ``BASELINE_SHARE``; ``true_dynamic_risk`` gives the true log-hazard at a landmark. Outcomes then
depend on ``longitudinal`` too (not on ``n_markers``: only the first two markers drive the hazard).

Every random draw comes from a stream keyed by ``(seed, stream, patient)``, so files are
byte-for-byte reproducible (gzip NIfTI headers carry no timestamp).
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

from multimodal.data.synth_image import body_mask, lesion_image
from multimodal.data.synth_longitudinal import (
    BASELINE_SHARE,
    MarkerTrajectories,
    check_n_markers,
    death_times,
    longitudinal_table,
    marker_ground_truth,
    marker_trajectories,
)
from multimodal.data.synth_text import SIGNAL_ROLES, addendum_sentences, report_sentences

__all__ = [
    "COMPONENT_MODALITIES",
    "SynthResult",
    "component_correlation",
    "components_present",
    "generate_cohort",
    "reachable_risk",
]

logger = logging.getLogger(__name__)

PATHWAYS = tuple(
    "cell_cycle dna_repair hypoxia emt immune_response pi3k_akt mapk wnt apoptosis".split()
)
# Pathway index -> log-hazard per SD of its activity (before scaling to unit variance).
_OS_PATHWAY_EFFECTS = {0: 0.8, 1: -0.5, 2: 0.6}
_PFS_PATHWAY = 3
#: Ground-truth risk component (``risk_<component>``) -> the modality that carries it.
COMPONENT_MODALITIES = {
    "clinical": "clinical",
    "genomics": "genomics",
    "text": "report",
    "imaging": "ct",
    "bags": "wsi",
}
_TEXT_MOMENTS = (2.057, 0.8025)  # population mean and SD of the report score
SITES: tuple[str, ...] = ("site_A", "site_B", "site_C", "site_D")
_SITE_P = (0.4, 0.3, 0.2, 0.1)
_SITE_FOLLOW_UP = (120.0, 96.0, 84.0, 108.0)  # months of accrual + follow-up per site
_STAGE_SCORE = {"I": -1.2, "II": -0.35, "III": 0.5, "IV": 1.5}
_STAGE_P = (0.25, 0.3, 0.27, 0.18)
_OS_WEIBULL = (1.2, 36.0)  # shape, scale (months) at log-hazard 0
_PFS_WEIBULL = (1.1, 24.0)
_DROPOUT_RATE = 1.0 / 150.0  # per month
# Names of the per-purpose random streams (their index keys the generator; append, never reorder).
_STREAMS = tuple(
    "clin site gen text img bag proto out miss report ct wsi burden markers visits".split()
)
# How strongly the shared tumour burden drives each modality's burden-related feature (the
# correlation of that feature's latent with the burden).
_BURDEN = {"stage": 0.8, "cell_cycle": 0.6, "nodes": 0.8, "lesion_size": 0.8}
# Weight of each modality's risk component in the log-hazard (before scaling to signal_strength):
# stage-driven clinical risk is the strongest single factor, as in most cancers.
_COMPONENT_WEIGHTS = {"clinical": 1.5, "genomics": 1.0, "text": 1.0, "imaging": 1.0, "bags": 1.0}


@dataclass
class SynthResult:
    """What :func:`generate_cohort` wrote.

    Attributes
    ----------
    out_dir : folder holding every file.
    manifest_path : ``out_dir / "cohort.yaml"``.
    ground_truth : DataFrame, one row per patient: patient_id, time, event, true_risk,
        risk_<component> (clinical, genomics, text, imaging, [bags]), true_pfs_risk, and with
        ``longitudinal``: true_marker_intercept_<marker>, true_marker_slope_<marker>,
        true_marker_gamma_<marker> (:func:`~multimodal.data.synth_longitudinal.true_dynamic_risk`).
    timing : seconds per stage (``latents``, ``tables``, ``reports``, ``images``, ``bags``,
        ``labs``)
        and ``total``.
    report_sentences : DataFrame, one row per sentence written into ``reports.csv`` (also
        ``report_sentences.csv``): patient_id, report_type, sentence_index (within its report),
        sentence, role (``grade``, ``margin``, ``lvi``, ``nodes``, ``filler``, ``addendum``),
        signal (True for the four findings, :data:`~multimodal.data.synth_text.SIGNAL_ROLES`).
    """

    out_dir: Path
    manifest_path: Path
    ground_truth: pd.DataFrame
    timing: dict[str, float] = field(default_factory=dict)
    report_sentences: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class _Latents:
    ids: list[str]
    clinical: pd.DataFrame
    genomics: pd.DataFrame
    groups: dict[str, list[str]]
    text: pd.DataFrame
    lesion_size: np.ndarray
    lesion_amplitude: np.ndarray
    bags: list | None
    ground_truth: pd.DataFrame
    patients: pd.DataFrame
    markers: MarkerTrajectories | None = None


def _rng(seed: int, stream: str, patient: int | None = None) -> np.random.Generator:
    key = [int(seed), _STREAMS.index(stream)] + ([] if patient is None else [int(patient)])
    return np.random.default_rng(key)


def _standardize(x: np.ndarray, mean: float, sd: float) -> np.ndarray:
    # Fixed population moments (not the sample's) so a patient's risk does not depend on the cohort.
    return (x - mean) / sd


def _mix(burden: np.ndarray, noise: np.ndarray, loading: float) -> np.ndarray:
    """A standard-normal latent with correlation ``loading`` to the burden."""
    return loading * burden + np.sqrt(1.0 - loading**2) * noise


def _clinical(seed: int, n: int, burden: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    rng = _rng(seed, "clin")
    age = np.clip(rng.normal(62.0, 10.0, n), 25.0, 90.0).round(0)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    # stage: the burden-driven latent cut at the quantiles of the stage distribution
    latent = _mix(burden, rng.standard_normal(n), _BURDEN["stage"])
    cuts = _norm_ppf(np.cumsum(_STAGE_P)[:-1])
    stage = np.array(list(_STAGE_SCORE))[np.searchsorted(cuts, latent)]
    table = pd.DataFrame({"age": age, "sex": sex, "stage": stage})
    return table, _standardize(_clinical_score(age, sex, stage), 0.149, 0.948)


def _clinical_score(age: np.ndarray, sex: np.ndarray, stage: np.ndarray) -> np.ndarray:
    return (
        0.5 * (age - 62.0) / 10.0
        + 0.85 * np.array([_STAGE_SCORE[s] for s in stage])
        + 0.3 * (sex == "M")
    )


def _norm_ppf(q: np.ndarray) -> np.ndarray:
    """Standard normal quantiles (via the inverse error function)."""
    from scipy.special import erfinv

    return np.sqrt(2.0) * erfinv(2.0 * np.asarray(q, dtype=float) - 1.0)


def _genomics(
    seed: int, n: int, n_genes: int, burden: np.ndarray
) -> tuple[pd.DataFrame, dict[str, list[str]], np.ndarray]:
    """Gene table, pathway groups and the latent pathway activities z, shape (n, n_pathways)."""
    n_path = len(PATHWAYS)
    if n_genes < 2 * n_path + 1:
        raise ValueError(
            f"n_genes is {n_genes}; need at least {2 * n_path + 1} (2 per pathway + noise)"
        )
    rng = _rng(seed, "gen")
    per_path = max(2, int(0.6 * n_genes / n_path))
    names = [f"GENE{j:04d}" for j in range(n_genes)]
    group_of = np.full(n_genes, -1)
    group_of[: per_path * n_path] = np.repeat(np.arange(n_path), per_path)
    z = rng.standard_normal((n, n_path))
    z[:, 0] = _mix(burden, z[:, 0], _BURDEN["cell_cycle"])  # proliferation follows the burden
    loading = rng.uniform(0.4, 0.85, n_genes)
    noise = rng.standard_normal((n, n_genes))
    latent = np.where(group_of >= 0, z[:, np.maximum(group_of, 0)], 0.0)
    signal = np.where(group_of >= 0, loading, 0.0)
    x = signal * latent + np.sqrt(1.0 - signal**2) * noise
    x = rng.uniform(4.0, 10.0, n_genes) + rng.uniform(0.5, 1.5, n_genes) * x  # log2-like scale
    groups = {p: [names[j] for j in np.flatnonzero(group_of == i)] for i, p in enumerate(PATHWAYS)}
    groups["background"] = [names[j] for j in np.flatnonzero(group_of < 0)]
    return pd.DataFrame(x.astype(np.float32), columns=names), groups, z


def _genomics_risk(z: np.ndarray) -> np.ndarray:
    beta = np.zeros(z.shape[1])
    for j, b in _OS_PATHWAY_EFFECTS.items():
        beta[j] = b
    return z @ beta / np.linalg.norm(beta)


def _text_latents(seed: int, n: int, burden: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    rng = _rng(seed, "text")
    grade = rng.choice([1, 2, 3], size=n, p=[0.25, 0.45, 0.3])
    margin = rng.random(n) < 0.25
    lvi = rng.random(n) < 0.35
    examined = rng.integers(6, 31, n)
    # nodal spread follows the burden: node-negative below the 45 % quantile, more nodes above
    nodal = _mix(burden, rng.standard_normal(n), _BURDEN["nodes"])
    lam = np.where(nodal < -0.1257, 0.0, rng.gamma(1.5, 2.0, n) * np.exp(0.5 * nodal))
    positive = np.minimum(rng.poisson(lam), examined)
    score = 0.6 * grade + 0.8 * margin + 0.6 * lvi + 0.55 * np.log1p(positive)
    table = pd.DataFrame(
        {"grade": grade, "margin_positive": margin, "lvi": lvi, "nodes_positive": positive}
    ).assign(nodes_examined=examined)
    return table, _standardize(score, *_TEXT_MOMENTS)


def _imaging_latents(
    seed: int, n: int, burden: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lesion size factor in (0, 1), texture amplitude (HU) and the imaging risk component."""
    rng = _rng(seed, "img")
    s, t = rng.standard_normal(n), rng.standard_normal(n)
    s = _mix(burden, s, _BURDEN["lesion_size"])  # bigger tumours, bigger lesions
    size = 1.0 / (1.0 + np.exp(-1.2 * s))
    amplitude = 6.0 + 34.0 / (1.0 + np.exp(-1.2 * t))
    return size, amplitude, (s + t) / np.sqrt(2.0)


def _outcomes(
    seed: int,
    n: int,
    risk: np.ndarray,
    pfs_risk: np.ndarray,
    sites: np.ndarray,
    death: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """OS, PFS and competing-risk event types from Weibull PH models with independent censoring.
    ``death`` maps each patient's unit exponential to a death time (a time-varying hazard); None
    inverts the Weibull PH hazard of ``risk``."""
    rng = _rng(seed, "out")
    (k_os, s_os), (k_pfs, s_pfs) = _OS_WEIBULL, _PFS_WEIBULL
    e_death = rng.exponential(size=n)
    t_death = s_os * (e_death * np.exp(-risk)) ** (1.0 / k_os) if death is None else death(e_death)
    t_prog = s_pfs * (rng.exponential(size=n) * np.exp(-pfs_risk)) ** (1.0 / k_pfs)
    follow_up = np.array(_SITE_FOLLOW_UP)[sites] * rng.uniform(0.25, 1.0, n)
    censor = np.minimum(follow_up, rng.exponential(1.0 / _DROPOUT_RATE, n))
    time = np.maximum(np.minimum(t_death, censor).round(2), 0.01)
    event = (t_death <= censor).astype(int)
    first = np.minimum.reduce([t_prog, t_death, censor])
    event_type = np.select([first == t_prog, first == t_death], [1, 2], default=0)
    pfs_time = np.minimum(np.maximum(first.round(2), 0.01), time)
    return pd.DataFrame(
        {
            "time": time,
            "event": event,
            "event_type": event_type,
            "pfs_time": pfs_time,
            "pfs_event": (event_type > 0).astype(int),
        }
    )


def _presence(
    seed: int, n: int, names: list[str], missing_rate: float, clinical_missing_rate: float
) -> dict[str, np.ndarray]:
    """Bool mask per modality (True = present); every patient keeps at least one modality."""
    rng = _rng(seed, "miss")
    u = rng.random((n, len(names)))
    rates = np.array([clinical_missing_rate if m == "clinical" else missing_rate for m in names])
    present = u >= rates
    none = ~present.any(axis=1)
    present[none, np.argmin(rates)] = True  # never all missing: keep the least-missing modality
    return {m: present[:, j] for j, m in enumerate(names)}


def _write_images(
    out_dir: Path,
    seed: int,
    lat: _Latents,
    present: np.ndarray,
    image_size: int,
    spatial_dims: int,
    image_format: str,
) -> pd.DataFrame:
    import nibabel as nib

    (out_dir / "images").mkdir(exist_ok=True)
    body = body_mask(image_size, spatial_dims)
    rows = []
    for i in np.flatnonzero(present):
        pid = lat.ids[i]
        rng = _rng(seed, "ct", i)
        img = lesion_image(
            rng, image_size, spatial_dims, lat.lesion_size[i], lat.lesion_amplitude[i], body
        )
        if image_format == "png":
            from PIL import Image

            rel = f"images/{pid}.png"
            window = np.clip((img.astype(np.float32) + 200.0) / 500.0 * 255.0, 0, 255)
            Image.fromarray(window.astype(np.uint8)).save(out_dir / rel)
        else:
            rel = f"images/{pid}.nii.gz"
            nib.Nifti1Image(img, np.eye(4)).to_filename(out_dir / rel)
        rows.append((pid, rel, image_format))
    return pd.DataFrame(rows, columns=["patient_id", "path", "format"])


def _reports(
    seed: int, ids: list[str], latents: pd.DataFrame, present: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report table and, one row per sentence written, the sentences' roles."""
    rows, sentences = [], []
    for i in np.flatnonzero(present):
        rng = _rng(seed, "report", i)
        r = latents.iloc[i]
        text, kind, written = report_sentences(
            rng, r.grade, r.margin_positive, r.lvi, r.nodes_positive, r.nodes_examined
        )
        date = np.datetime64("2010-01-01") + int(rng.integers(0, 3650))
        rows.append((ids[i], text, str(date), kind))
        sentences += [(ids[i], kind, j, s, role) for j, (s, role) in enumerate(written)]
        if rng.random() < 0.25:
            later = date + int(rng.integers(3, 60))
            text, written = addendum_sentences(rng)
            rows.append((ids[i], text, str(later), "addendum"))
            sentences += [(ids[i], "addendum", j, s, role) for j, (s, role) in enumerate(written)]
    columns = ["patient_id", "report_type", "sentence_index", "sentence", "role"]
    roles = pd.DataFrame(sentences, columns=columns)
    roles["signal"] = roles["role"].isin(SIGNAL_ROLES)
    return pd.DataFrame(rows, columns=["patient_id", "text", "date", "report_type"]), roles


def _bags(seed: int, n: int, bag_dim: int) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Feature bags (one or two slides per patient) and the bag risk component."""
    u = _rng(seed, "bag").standard_normal(n)
    proto_rng = _rng(seed, "proto")
    tumour = proto_rng.standard_normal(bag_dim)
    tumour *= 2.5 / np.linalg.norm(tumour)
    tissue = proto_rng.standard_normal((4, bag_dim))
    fraction = 0.05 + 0.4 / (1.0 + np.exp(-1.5 * u))
    bags = []
    for i in range(n):
        rng = _rng(seed, "wsi", i)
        slides = []
        for _ in range(1 + int(rng.random() < 0.2)):
            n_patch = int(rng.integers(16, 257))
            x = tissue[rng.integers(0, 4, n_patch)] + rng.standard_normal((n_patch, bag_dim))
            x[rng.random(n_patch) < fraction[i]] += tumour
            slides.append(x.astype(np.float32))
        bags.append(slides)
    return bags, u


def _write_bags(out_dir: Path, ids: list[str], bags: list, present: np.ndarray) -> pd.DataFrame:
    import torch

    (out_dir / "bags").mkdir(exist_ok=True)
    rows = []
    for i in np.flatnonzero(present):
        for s, x in enumerate(bags[i]):
            slide = f"{ids[i]}-S{s + 1}"
            rel = f"bags/{slide}.pt"
            torch.save(torch.from_numpy(x), out_dir / rel)
            rows.append((ids[i], rel, slide))
    return pd.DataFrame(rows, columns=["patient_id", "path", "slide_id"])


def _write_table(table: pd.DataFrame, path: Path, folder: str | None = None) -> None:
    """Write a file table; delete files of an earlier run in ``folder`` that it does not list."""
    table.to_csv(path, index=False, lineterminator="\n")
    if folder is not None:
        keep = {path.parent / p for p in table["path"]}
        for stale in (path.parent / folder).glob("SYN-*"):
            if stale not in keep:
                stale.unlink()


def _manifest(seed: int, entries: dict[str, dict]) -> dict:
    return {
        "version": 1,
        "name": f"synthetic-seed{seed}",
        "description": f"multimodal.data.synth, seed {seed}; true log-hazards in ground_truth.csv",
        "patients": {"path": "patients.csv", "time_unit": "months"},
        "modalities": entries,
    }


def _check_args(
    n_patients: int, missing_rate: float, image_size: int, spatial_dims: int, image_format: str
) -> None:
    if n_patients < 2:
        raise ValueError(f"n_patients is {n_patients}; a cohort needs at least 2 patients")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate is {missing_rate}; choose a fraction in [0, 1)")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims is {spatial_dims}; choose 2 or 3")
    if image_size < 8:
        raise ValueError(f"image_size is {image_size}; choose at least 8 voxels")
    if image_format not in ("nifti", "png"):
        raise ValueError(f"image_format is {image_format!r}; choose 'nifti' or 'png'")
    if image_format == "png" and spatial_dims != 2:
        raise ValueError("image_format='png' needs spatial_dims=2; use 'nifti' for 3D images")


def _components(
    seed: int, n: int, n_genes: int, with_feature_bags: bool, bag_dim: int
) -> tuple[dict[str, np.ndarray], tuple]:
    """Unit-variance risk components per modality, and the tables/latents behind them."""
    burden = _rng(seed, "burden").standard_normal(n)
    clinical, r_clin = _clinical(seed, n, burden)
    genomics, groups, z = _genomics(seed, n, n_genes, burden)
    text, r_text = _text_latents(seed, n, burden)
    size, amplitude, r_img = _imaging_latents(seed, n, burden)
    comps = {"clinical": r_clin, "genomics": _genomics_risk(z), "text": r_text, "imaging": r_img}
    bags = None
    if with_feature_bags:
        bags, comps["bags"] = _bags(seed, n, bag_dim)
    return comps, (clinical, genomics, groups, z, text, size, amplitude, bags, burden)


@lru_cache(maxsize=1)
def _base_correlation() -> pd.DataFrame:
    """Population correlation of the unit-variance components (clinical, genomics, text, imaging;
    correlated through the burden), from one large fixed-seed sample: a patient's risk must not
    depend on the cohort it was drawn with."""
    comps, _ = _components(2**31 - 1, 100_000, 19, False, 2)
    return pd.DataFrame(comps).corr()


def component_correlation(names: Sequence[str]) -> pd.DataFrame:
    """Population correlation of the risk components ``names`` (``bags`` is independent)."""
    names = list(names)
    identity = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    return _base_correlation().reindex(index=names, columns=names).fillna(identity)


def _component_sd(names: tuple[str, ...]) -> float:
    """Population SD of ``sum_k weight_k * r_k``."""
    w = np.array([_COMPONENT_WEIGHTS[k] for k in names])
    return float(np.sqrt(w @ component_correlation(names).to_numpy() @ w))


def components_present(availability: pd.DataFrame) -> pd.DataFrame:
    """Which risk components each patient's modalities carry: ``availability`` (one bool column
    per modality name, as ``Cohort.availability()``) renamed to component names
    (:data:`COMPONENT_MODALITIES`); a modality the cohort lacks is absent for everyone."""
    return pd.DataFrame(
        {
            c: availability[m].astype(bool) if m in availability else False
            for c, m in COMPONENT_MODALITIES.items()
        },
        index=availability.index,
    )


def reachable_risk(ground_truth: pd.DataFrame, present: pd.DataFrame) -> pd.Series:
    """The best risk any model can reach from the modalities each patient has: the expected true
    log-hazard given the risk components of the present modalities (Gaussian conditioning on the
    population correlation; a missing modality's component is partly predictable from the others
    through the shared burden).

    Parameters
    ----------
    ground_truth : ``ground_truth.csv`` indexed by patient_id (``risk_<component>`` columns).
    present : bool DataFrame indexed like it, one column per component name (``clinical``,
        ``genomics``, ``text``, ``imaging``, ``bags``).
    """
    names = [c[len("risk_") :] for c in ground_truth.columns if c.startswith("risk_")]
    corr = component_correlation(names).to_numpy()
    values = ground_truth[[f"risk_{k}" for k in names]].to_numpy(dtype=float)
    weights = np.array([_COMPONENT_WEIGHTS[k] for k in names])
    z = values / weights  # the unit-variance components times the cohort's common scale
    mask = present.reindex(index=ground_truth.index, columns=names).fillna(False).to_numpy(bool)
    out = np.zeros(len(values))
    for pattern in {tuple(row) for row in mask}:
        rows = np.all(mask == np.array(pattern), axis=1)
        seen = np.array(pattern, dtype=bool)
        if not seen.any():
            continue
        beta = np.linalg.solve(corr[np.ix_(seen, seen)], corr[seen] @ weights)
        out[rows] = z[rows][:, seen] @ beta
    return pd.Series(out, index=ground_truth.index, name="reachable_risk")


def _marker_hazard(
    seed: int, burden: np.ndarray, n_markers: int, risk: np.ndarray, marker_burden: float = 1.0
) -> tuple[MarkerTrajectories | None, Callable[[np.ndarray], np.ndarray] | None]:
    """Marker trajectories and the death times they imply with the log-hazard ``risk`` (unit
    exponential -> time); (None, None) without markers."""
    if not n_markers:
        return None, None
    markers = marker_trajectories(_rng(seed, "markers"), burden, n_markers, marker_burden)
    alpha, beta = markers.log_hazard_line()
    death = partial(
        death_times,
        log_hazard_intercept=risk + alpha,
        log_hazard_slope=beta,
        weibull=_OS_WEIBULL,
        horizon=max(_SITE_FOLLOW_UP),  # no censoring time is later
    )
    return markers, death


def _simulate(
    seed: int,
    n: int,
    n_genes: int,
    signal_strength: float,
    with_feature_bags: bool,
    bag_dim: int,
    n_markers: int = 0,
    marker_burden: float = 1.0,
) -> _Latents:
    """Every latent, table and outcome of the cohort (no files); ``n_markers`` > 0 adds
    longitudinal markers that drive the hazard of death."""
    ids = [f"SYN-{i:0{max(4, len(str(n - 1)))}d}" for i in range(n)]
    comps, parts = _components(seed, n, n_genes, with_feature_bags, bag_dim)
    clinical, genomics, groups, z, text, size, amplitude, bags, burden = parts
    scale = signal_strength / _component_sd(tuple(comps))
    if n_markers:  # the markers carry part of the signal
        scale *= BASELINE_SHARE
    gt = pd.DataFrame({f"risk_{k}": scale * _COMPONENT_WEIGHTS[k] * v for k, v in comps.items()})
    gt.insert(0, "true_risk", gt.sum(axis=1))
    gt["true_pfs_risk"] = 0.7 * gt["true_risk"] + 0.6 * z[:, _PFS_PATHWAY]
    sites = _rng(seed, "site").choice(len(SITES), size=n, p=_SITE_P)
    markers, death = _marker_hazard(
        seed, burden, n_markers, gt["true_risk"].to_numpy(), marker_burden
    )
    risk, pfs_risk = gt["true_risk"].to_numpy(), gt["true_pfs_risk"].to_numpy()
    outcomes = _outcomes(seed, n, risk, pfs_risk, sites, death)
    patients = outcomes.assign(site=np.array(SITES)[sites])
    patients.insert(0, "patient_id", ids)
    gt = pd.concat([patients[["patient_id", "time", "event"]], gt], axis=1)
    if markers is not None:
        gt = pd.concat([gt, marker_ground_truth(markers)], axis=1)
    return _Latents(
        ids, clinical, genomics, groups, text, size, amplitude, bags, gt, patients, markers
    )


def _with_ids(table: pd.DataFrame, ids: list[str], present: np.ndarray) -> pd.DataFrame:
    out = table.copy()
    out.insert(0, "patient_id", ids)
    return out.loc[present].reset_index(drop=True)


def _write_tables(out_dir: Path, lat: _Latents, present: dict[str, np.ndarray]) -> dict[str, dict]:
    csv = {"index": False, "lineterminator": "\n"}
    lat.patients.to_csv(out_dir / "patients.csv", **csv)
    lat.ground_truth.to_csv(out_dir / "ground_truth.csv", float_format="%.6f", **csv)
    _with_ids(lat.clinical, lat.ids, present["clinical"]).to_csv(out_dir / "clinical.csv", **csv)
    genomics = _with_ids(lat.genomics, lat.ids, present["genomics"])
    genomics.to_csv(out_dir / "genomics.csv", float_format="%.4f", **csv)
    pairs = [(g, f) for g, feats in lat.groups.items() for f in feats]
    pd.DataFrame(pairs, columns=["group", "feature"]).to_csv(out_dir / "groups.csv", **csv)
    clinical = {"kind": "clinical", "path": "clinical.csv", "numeric": ["age"]}
    return {
        "clinical": {**clinical, "categorical": ["sex", "stage"]},
        "genomics": {"kind": "genomics", "path": "genomics.csv", "groups_path": "groups.csv"},
    }


def _write_labs(out_dir: Path, seed: int, lat: _Latents, missing_rate: float) -> dict:
    """Write ``longitudinal.csv`` (patients lack it with probability ``missing_rate``); its
    manifest entry."""
    rng = _rng(seed, "visits")
    present = rng.random(len(lat.ids)) >= missing_rate
    time = lat.patients["time"].to_numpy()
    table = longitudinal_table(rng, lat.ids, lat.markers, time, present, max(_SITE_FOLLOW_UP))
    _write_table(table, out_dir / "longitudinal.csv")
    return {"kind": "longitudinal", "path": "longitudinal.csv", "time_unit": "months"}


def generate_cohort(
    out_dir: str | Path,
    n_patients: int = 500,
    seed: int = 0,
    missing_rate: float = 0.2,
    image_size: int = 64,
    spatial_dims: Literal[2, 3] = 3,
    with_images: bool = True,
    with_feature_bags: bool = False,
    n_genes: int = 200,
    image_format: Literal["nifti", "png"] = "nifti",
    signal_strength: float = 1.5,
    clinical_missing_rate: float = 0.0,
    bag_dim: int = 64,
    longitudinal: bool = False,
    n_markers: int = 3,
    marker_burden: float = 1.0,
) -> SynthResult:
    """Write a synthetic multimodal survival cohort with a known ground truth.

    Parameters
    ----------
    out_dir : folder to write into (created; existing files of the same names are overwritten).
    n_patients : number of patients.
    seed : seed of every random stream; the same seed gives byte-identical files.
    missing_rate : probability that a patient lacks each of genomics / report / ct / wsi
        (independently); missing = absent row or file.
    image_size, spatial_dims : image side length in voxels and 2 or 3 dimensions.
    with_images : write the ``ct`` modality (False skips it for fast tabular runs; the imaging
        risk component still enters the hazard, so outcomes do not change).
    with_feature_bags : add the ``wsi`` feature-bag modality and its risk component (this changes
        the outcomes, since the hazard gains a component).
    n_genes : number of gene columns (about 60 % in nine pathways, the rest background noise).
    image_format : ``"nifti"`` (.nii.gz) or ``"png"`` (2D only, uint8 window of [-200, 300] HU).
    signal_strength : SD of ``true_risk`` (log-hazard); 1.5 gives a true C-index near 0.8.
    clinical_missing_rate : probability that a patient lacks the clinical row (default 0).
    bag_dim : feature dimension of the patch features in the bags.
    longitudinal : add the ``labs`` modality (kind ``longitudinal``, ``longitudinal.csv``): repeat
        biomarker measurements whose true trajectories drive the hazard of death
        (:mod:`multimodal.data.synth_longitudinal`; this changes the outcomes, and ``true_risk``
        becomes the time-constant part of the log-hazard).
    n_markers : with ``longitudinal``, how many markers (2-4: cea, albumin, ldh, haemoglobin);
        cea and albumin drive the hazard, the others are decoys.
    marker_burden : with ``longitudinal``, how strongly the markers follow the latent tumour
        burden that the baseline modalities also reflect (1 = as designed; 0 = markers independent
        of it, so the labs and the baseline modalities carry separate information).

    Returns
    -------
    SynthResult
        Manifest path, ground truth (``true_risk``: log-hazard of death, higher = worse) and
        per-stage timings in seconds.
    """
    _check_args(n_patients, missing_rate, image_size, spatial_dims, image_format)
    if longitudinal:
        check_n_markers(n_markers)
    start = last = _time.perf_counter()
    timing: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal last
        now = _time.perf_counter()
        timing[stage], last = now - last, now

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markers = n_markers if longitudinal else 0
    lat = _simulate(
        seed,
        n_patients,
        n_genes,
        signal_strength,
        with_feature_bags,
        bag_dim,
        markers,
        marker_burden,
    )
    names = ["clinical", "genomics", "report"] + ["ct"] * with_images + ["wsi"] * with_feature_bags
    present = _presence(seed, n_patients, names, missing_rate, clinical_missing_rate)
    lap("latents")
    entries = _write_tables(out, lat, present)
    lap("tables")
    reports, sentences = _reports(seed, lat.ids, lat.text, present["report"])
    _write_table(reports, out / "reports.csv")
    _write_table(sentences, out / "report_sentences.csv")
    entries["report"] = {"kind": "text", "path": "reports.csv"}
    lap("reports")
    if with_images:
        images = _write_images(
            out, seed, lat, present["ct"], image_size, spatial_dims, image_format
        )
        _write_table(images, out / "images.csv", "images")
        entries["ct"] = {"kind": "imaging", "path": "images.csv", "spatial_dims": spatial_dims}
        lap("images")
    if with_feature_bags:
        _write_table(_write_bags(out, lat.ids, lat.bags, present["wsi"]), out / "bags.csv", "bags")
        entries["wsi"] = {"kind": "feature_bag", "path": "bags.csv"}
        lap("bags")
    if longitudinal:
        entries["labs"] = _write_labs(out, seed, lat, missing_rate)
        lap("labs")
    manifest = out / "cohort.yaml"
    manifest.write_text(yaml.safe_dump(_manifest(seed, entries), sort_keys=False))
    timing["total"] = _time.perf_counter() - start
    logger.info(
        "synthetic cohort of %d patients written to %s in %.2f s", n_patients, out, timing["total"]
    )
    return SynthResult(out, manifest, lat.ground_truth, timing, sentences)
