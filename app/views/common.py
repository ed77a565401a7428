"""Cached loading and small widgets shared by the views.

Everything heavy is cached: the run's artefacts, the cohort and the model once per process
(``st.cache_resource``, read-only objects), per-patient predictions and evidence per patient
(``st.cache_data``). Nothing here logs patient ids or text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from multimodal.dashboard import cohort_stats, evidence, ood, patient
from multimodal.dashboard.figures import Curve, curves_png
from multimodal.dashboard.launch import ENV_COHORT, ENV_RUN
from multimodal.dashboard.run_data import RunData, load_run_data
from multimodal.runfolder import RunFolder


@dataclass
class Ctx:
    """What every view gets: the run (always) and the keys of the cached loaders."""

    run_dir: str
    cohort_arg: str | None
    run: RunData

    @property
    def cohort_path(self) -> str | None:
        return str(self.run.cohort_path) if self.run.cohort_path else None

    @property
    def unit(self) -> str:
        return self.run.time_unit

    def cohort(self):
        return get_cohort(self.cohort_path) if self.cohort_path else None

    def model(self):
        return get_model(self.run_dir)


def settings() -> tuple[str | None, str | None]:
    """The run folder and cohort: from the session (tests), else the environment set by
    ``multimodal dashboard``."""
    run_dir = st.session_state.get("run_dir") or os.environ.get(ENV_RUN)
    cohort = st.session_state.get("cohort") or os.environ.get(ENV_COHORT)
    return run_dir, cohort


@st.cache_resource(show_spinner="Reading the run folder…", max_entries=4)
def get_run(run_dir: str, cohort: str | None, stamp: float) -> RunData:
    # ``stamp`` (mtime of predictions.csv) reloads a run that was re-trained in place
    return load_run_data(run_dir, cohort)


def open_run(run_dir: str, cohort: str | None) -> RunData:
    try:
        stamp = os.stat(RunFolder(run_dir).predictions_path).st_mtime
    except OSError:
        stamp = 0.0
    return get_run(run_dir, cohort, stamp)


@st.cache_resource(show_spinner="Loading the cohort…", max_entries=2)
def get_cohort(path: str):
    from multimodal.data.cohort import Cohort

    return Cohort.load(path)


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def get_model(run_dir: str):
    from multimodal.models.run import load_run

    return load_run(run_dir)


@st.cache_resource(max_entries=4)
def get_attributes(_run: RunData, run_key: str, cohort_path: str | None) -> pd.DataFrame:
    return cohort_stats.patient_attributes(_run, get_cohort(cohort_path) if cohort_path else None)


@st.cache_data(max_entries=16, show_spinner=False)
def get_groups(_run: RunData, run_key: str, n_groups: int, endpoint: str) -> pd.Series:
    return cohort_stats.risk_groups(_run, n_groups, endpoint)


@st.cache_data(max_entries=16, show_spinner=False)
def get_metric_table(_run: RunData, run_key: str, endpoint: str, ids: tuple | None) -> pd.DataFrame:
    idx = pd.Index(ids) if ids is not None else None
    return cohort_stats.metric_table(_run, n_boot=100, endpoint=endpoint, ids=idx)


@st.cache_resource(max_entries=4)
def get_profile(run_dir: str, cohort_path: str | None) -> ood.TrainingProfile:
    run = open_run(run_dir, None)
    cohort = get_cohort(cohort_path) if cohort_path else None
    return ood.training_profile(get_model(run_dir), cohort, list(run.oof().index))


@st.cache_resource(max_entries=4)
def get_explanation_tables(run_dir: str, stamp: float):
    return evidence.read_explanation_tables(run_dir)


def explanation_tables(run_dir: str):
    try:
        stamp = os.stat(RunFolder(run_dir).explanations_dir).st_mtime
    except OSError:
        return None
    return get_explanation_tables(run_dir, stamp)


@st.cache_data(max_entries=256, show_spinner="Predicting…")
def predict_patients(
    run_dir: str, cohort_path: str, ids: tuple[str, ...], max_time: float, unit: str
):
    grid = patient.curve_grid(max_time, extra=list(patient.horizons_for(unit).values()))
    cohort = get_cohort(cohort_path).subset(list(ids))
    return patient.fold_predictions(get_model(run_dir), cohort, grid)


@st.cache_data(max_entries=64, show_spinner="Working out what drove the prediction…")
def patient_evidence(run_dir: str, cohort_path: str, pid: str, full: bool = False):
    """Saved explanations when the run has them; else, with ``full``, the explain step for this
    patient (in memory: the run folder is never written); else the quick estimate."""
    cohort = get_cohort(cohort_path)
    text = ""
    for m in cohort.modalities:
        src = cohort.sources[m]
        if src.kind == "text" and pid in src.patient_ids:
            text = str(src.texts().get(pid, ""))
            break
    found = evidence.evidence_from_files(run_dir, explanation_tables(run_dir), pid, text)
    if found is not None:
        return found
    model = get_model(run_dir)
    if full and has_explain(model):
        found = evidence.evidence_from_explanation(
            model.explain(cohort.subset([pid]), [pid]), pid, text
        )
        if found is not None:
            return found
    return evidence.compute_evidence(model, cohort, pid, saliency=False)


@st.cache_data(max_entries=64, show_spinner="Occluding blocks of the image…")
def patient_saliency(run_dir: str, cohort_path: str, pid: str, modality: str):
    """Quick occlusion saliency of one image (kept apart: it costs as much as the rest)."""
    cohort = get_cohort(cohort_path).subset([pid])
    return evidence.image_saliency(get_model(run_dir), cohort, pid, modality)


def has_explain(model: Any) -> bool:
    """Whether the explain step (:mod:`multimodal.explain`) is available for this model."""
    return callable(getattr(model, "explain", None))


def png_download(
    label: str, curves: list[Curve], title: str, xlabel: str, ylabel: str, file_name: str, key: str
):
    """A PNG download button; the PNG is drawn only when clicked."""
    st.download_button(
        label,
        data=lambda: curves_png(curves, title, xlabel, ylabel),
        file_name=file_name,
        mime="image/png",
        key=key,
    )


def csv_download(label: str, frame: pd.DataFrame, file_name: str, key: str, index: bool = False):
    st.download_button(
        label,
        data=lambda: frame.to_csv(index=index).encode(),
        file_name=file_name,
        mime="text/csv",
        key=key,
    )


def curve_downloads(
    curves: list[Curve], table: pd.DataFrame, title: str, unit: str, stem: str, key: str
) -> None:
    """PNG and CSV download buttons side by side for survival curves: ``<stem>.png`` (the PNG is
    drawn only when clicked) and ``<stem>.csv`` (``table``); widget keys ``dl_<key>_png|csv``."""
    c1, c2 = st.columns(2)
    with c1:
        png_download(
            "Download PNG",
            curves,
            title,
            f"time ({unit})",
            "survival probability",
            f"{stem}.png",
            f"dl_{key}_png",
        )
    with c2:
        csv_download("Download CSV", table, f"{stem}.csv", f"dl_{key}_csv")


def fmt_time(t: float, unit: str) -> str:
    return "not reached" if t != t else f"{t:.1f} {unit}"


def fmt_number(t: float) -> str:
    """A time for a metric tile (the unit is in the label)."""
    return "not reached" if t != t else f"{t:.1f}"
