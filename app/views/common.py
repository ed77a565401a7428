"""Cached loading and small widgets shared by the views.

Everything heavy is cached: the run's artefacts, the cohort and the model once per process
(``st.cache_resource``, read-only objects), per-patient predictions and evidence per patient
(``st.cache_data``). The model (torch, the encoders' libraries) is loaded only when a page needs
a prediction the run folder does not hold. Nothing here logs patient ids or text.
"""

from __future__ import annotations

import ast
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard import cohort_stats, evidence, landmark, ood, patient, vocabulary
from multimodal.dashboard.figures import Curve, curves_png
from multimodal.dashboard.launch import ENV_COHORT, ENV_RUN
from multimodal.dashboard.run_data import RunData, load_run_data
from multimodal.dashboard.vocabulary import (
    event_probability_label,
    fmt_hr,
    fmt_pct,
    time_axis,
)
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

    @property
    def run_key(self) -> str:
        """Cache key of what the page shows: the run folder, and the landmark of a landmark
        run's view at one landmark (:meth:`RunData.at_landmark`)."""
        s = self.run.landmark_at
        return self.run_dir if s is None else f"{self.run_dir}@{s:g}"

    def cohort(self):
        return get_cohort(self.cohort_path, self.run_dir) if self.cohort_path else None

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


def get_cohort(path: str, run_dir: str | None = None):
    """The cohort at ``path``, read as the run at ``run_dir`` was trained on it (the
    ``data.clinical_*`` covariates of a TCGA folder; :meth:`Cohort.load_for_run`)."""
    from multimodal.config import cohort_options_of

    options = cohort_options_of(RunFolder(run_dir).read_config_raw()) if run_dir else {}
    return _load_cohort(path, tuple((k, tuple(v)) for k, v in sorted(options.items())))


@st.cache_resource(show_spinner="Loading the cohort…", max_entries=2)
def _load_cohort(path: str, options: tuple):
    from multimodal.data.cohort import Cohort

    return Cohort.load_for_run(path, {"data": {key: list(cols) for key, cols in options}})


def _load_and_warm(run_dir: str, cohort: Any, patient_id: str | None):
    """The run's fold models, after one prediction for ``patient_id`` of ``cohort`` (when
    given): that first prediction imports the encoders' libraries (monai for image networks,
    about as long as torch itself) and fills the preprocessing caches, so the patient page
    does not wait for them. Runs in the warm-up thread; a failed warm-up prediction is ignored
    (the page then meets the same error itself)."""
    from multimodal.models.run import load_run

    model = load_run(run_dir)
    if cohort is not None and patient_id is not None:
        try:
            patient.fold_predictions(model, cohort.subset([patient_id]), [0.0, 1.0])
        except Exception:  # only a warm-up: the page meets and reports real errors itself
            pass
    return model


@st.cache_resource(show_spinner=False, max_entries=2)
def _model_loader(run_dir: str) -> dict:
    """One loader per run folder: ``{"future": Future | None}`` (set by :func:`warm_up` or the
    first :func:`get_model`)."""
    return {"future": None, "lock": threading.Lock()}


def _serialise_ast_parse() -> None:
    """Let one thread at a time run :func:`ast.parse` (Python < 3.13).

    CPython 3.11 and 3.12 count the AST conversion's recursion depth in interpreter-wide state, so
    two threads parsing at once can fail with "SystemError: AST constructor recursion depth
    mismatch". Streamlit parses a page's script in its script thread while the warm-up thread
    imports torch modules that parse their own source (``torch._jit_internal``); one lock around
    ``ast.parse`` keeps them apart. Parsing is rare and short, so the lock costs nothing.
    """
    if sys.version_info >= (3, 13) or getattr(ast.parse, "_multimodal_locked", False):
        return
    original, lock = ast.parse, threading.RLock()

    def parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(*args, **kwargs)

    parse._multimodal_locked = True  # type: ignore[attr-defined]
    parse.__doc__ = original.__doc__
    ast.parse = parse


def warm_up(ctx: Ctx) -> None:
    """Start loading the fold models in a background thread once the page is drawn, so that the
    patient, compare and new-patient pages find them loaded. Cheap when already started; does
    nothing for a run without a model folder."""
    if not RunFolder(ctx.run_dir).model_dir.is_dir():
        return
    loader = _model_loader(ctx.run_dir)
    with loader["lock"]:
        if loader["future"] is not None:
            return
        cohort = ctx.cohort()
        pid = None
        if cohort is not None:
            known = set(map(str, cohort.patients.index))
            pid = next((i for i in ctx.run.oof().index if i in known), None)
        _serialise_ast_parse()
        pool = ThreadPoolExecutor(1, thread_name_prefix="mm-dashboard-warmup")
        loader["future"] = pool.submit(_load_and_warm, ctx.run_dir, cohort, pid)
        pool.shutdown(wait=False)


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def get_model(run_dir: str):
    """The run's fold models (``multimodal.load_run``): from the warm-up thread when it started,
    else loaded now (and then no warm-up runs)."""
    loader = _model_loader(run_dir)
    with loader["lock"]:
        future, owner = loader["future"], loader["future"] is None
        if owner:
            future = loader["future"] = Future()
    if owner:
        from multimodal.models.run import load_run

        try:
            future.set_result(load_run(run_dir))
        except BaseException as exc:
            future.set_exception(exc)
    try:
        return future.result()
    except BaseException:
        with loader["lock"]:  # the next page tries again (and shows the error)
            if loader["future"] is future:
                loader["future"] = None
        raise


@st.cache_resource(max_entries=4)
def get_attributes(_run: RunData, run_key: str, cohort_path: str | None) -> pd.DataFrame:
    cohort = get_cohort(cohort_path, _run.run_dir) if cohort_path else None
    return cohort_stats.patient_attributes(_run, cohort)


@st.cache_data(max_entries=16, show_spinner=False)
def get_groups(_run: RunData, run_key: str, n_groups: int, endpoint: str) -> pd.Series:
    return cohort_stats.risk_groups(_run, n_groups, endpoint)


@st.cache_data(max_entries=16, show_spinner=False)
def get_metric_table(_run: RunData, run_key: str, endpoint: str, ids: tuple | None) -> pd.DataFrame:
    idx = pd.Index(ids) if ids is not None else None
    return cohort_stats.metric_table(_run, endpoint=endpoint, ids=idx)


@st.cache_resource(max_entries=4)
def get_profile(run_dir: str, cohort_path: str | None) -> ood.TrainingProfile:
    run = open_run(run_dir, None)
    cohort = get_cohort(cohort_path, run_dir) if cohort_path else None
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
    """The fold models' curves of cohort patients on a fine grid up to ``max_time`` (a landmark
    run: from each patient's latest visit, up to its horizon)."""
    run = open_run(run_dir, None)
    grid = patient.curve_grid(
        min(max_time, patient.curve_limit(run)), extra=list(patient.run_horizons(run).values())
    )
    cohort = get_cohort(cohort_path, run_dir).subset(list(ids))
    return patient.fold_predictions(
        get_model(run_dir), cohort, grid, run.reference_risks(), run.pooled_reference()
    )


@st.cache_data(max_entries=64, show_spinner="Predicting at each visit…")
def visit_risks(run_dir: str, cohort_path: str, pid: str, fold: int | None) -> pd.DataFrame:
    """A landmark run: the event probability within the horizon predicted at each of the
    patient's visits (:func:`multimodal.dashboard.landmark.risk_at_visits`)."""
    run = open_run(run_dir, None)
    cohort = get_cohort(cohort_path, run_dir).subset([pid])
    model = get_model(run_dir)
    visits = landmark.visit_times(landmark.measurements(cohort, pid, model.modalities))
    return landmark.risk_at_visits(model, cohort, pid, float(run.horizon), visits, fold)


@st.cache_data(max_entries=64, show_spinner="Working out what drove the prediction…")
def patient_evidence(run_dir: str, cohort_path: str, pid: str, full: bool = False):
    """Saved explanations when the run has them; else, with ``full``, the explain step for this
    patient (in memory: the run folder is never written); else the quick estimate."""
    cohort = get_cohort(cohort_path, run_dir)
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
    cohort = get_cohort(cohort_path, run_dir).subset([pid])
    return evidence.image_saliency(get_model(run_dir), cohort, pid, modality)


@st.cache_data(max_entries=64, show_spinner=False)
def patient_points(run_dir: str, cohort_path: str, pid: str, full: bool, survival: float):
    """The patient's evidence in percentage points of event probability (see
    :func:`multimodal.dashboard.evidence.in_points`)."""
    return evidence.in_points(patient_evidence(run_dir, cohort_path, pid, full), survival)


def has_explain(model: Any) -> bool:
    """Whether the explain step (:mod:`multimodal.explain`) is available for this model."""
    return callable(getattr(model, "explain", None))


def png_download(
    label: str,
    curves: list[Curve],
    title: str,
    xlabel: str,
    ylabel: str,
    file_name: str,
    key: str,
    at_risk: pd.DataFrame | None = None,
):
    """A PNG download button; the PNG is drawn only when clicked."""
    st.download_button(
        label,
        data=lambda: curves_png(curves, title, xlabel, ylabel, at_risk=at_risk),
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
    curves: list[Curve],
    table: pd.DataFrame,
    title: str,
    unit: str,
    stem: str,
    key: str,
    at_risk: pd.DataFrame | None = None,
    xlabel: str | None = None,
) -> None:
    """PNG and CSV download buttons side by side for survival curves: ``<stem>.png`` (the PNG is
    drawn only when clicked, with the numbers at risk when given) and ``<stem>.csv``
    (``table``); widget keys ``dl_<key>_png|csv``. ``xlabel``: the time axis (default
    ``time (<unit>)``)."""
    c1, c2 = st.columns(2)
    with c1:
        png_download(
            "Download PNG",
            curves,
            title,
            xlabel or time_axis(unit),
            "survival probability",
            f"{stem}.png",
            f"dl_{key}_png",
            at_risk=at_risk,
        )
    with c2:
        csv_download("Download CSV", table, f"{stem}.csv", f"dl_{key}_csv")


def at_risk_caption(at_risk: pd.DataFrame | None, unit: str) -> None:
    """The line under a Kaplan-Meier plot that says what the numbers at risk are."""
    if at_risk is not None and len(at_risk):
        st.caption(
            f"Number at risk: patients still followed (no event, not censored) at each time "
            f"({unit}), shown under the plot."
        )


def probability_tiles(
    cols,
    pred,
    pid: str,
    fold: int | None,
    horizons: dict[str, float],
    unit: str,
    last: float,
    since: str | None = None,
) -> None:
    """One tile per horizon: event probability by t with the fold models' range; ``last`` is
    the longest follow-up (later horizons are extrapolations, and the tile says so). ``since``:
    a landmark run's prediction, whose times count from that moment ("the latest visit")."""
    for col, (label, t) in zip(cols, horizons.items()):
        p, lo, hi = pred.event_probability(pid, t, fold)
        extra = " Beyond the longest follow-up of the cohort: an extrapolation." if t > last else ""
        if np.isnan(p):
            extra = " Not available: beyond the times the run's predictions were saved at."
        what = (
            f"Probability of the event within {label} ({t:g} {unit}) of {since}, for a patient "
            f"alive then = 1 − survival probability {label} after {since}."
            if since
            else f"Probability of the event by {label} ({t:g} {unit}) = 1 − survival probability "
            f"at {label}."
        )
        col.metric(
            event_probability_label(label, within=since is not None),
            fmt_pct(p),
            None if np.isnan(lo) else f"folds {fmt_pct(lo)}–{fmt_pct(hi)}",
            help=what + " Range: the fold models' values." + extra,
            delta_color="off",
            delta_arrow="off",
        )


MEDIAN_HELP = "predicted median survival time: where the survival curve crosses 50%"


def median_tile(col, pred, pid: str, fold: int | None, unit: str, help: str = MEDIAN_HELP) -> None:
    """The predicted median survival of ``fold``'s model (None: the ensemble), with the range over
    the fold models."""
    med, lo, hi = pred.median(pid, fold)
    col.metric(
        "median survival",
        fmt_time(med, unit),
        None if np.isnan(lo) else f"folds {fmt_time(lo, unit)}–{fmt_time(hi, unit)}",
        help=help,
        delta_color="off",
        delta_arrow="off",
    )


def hazard_tile(col, run: RunData, pred, pid: str, fold: int | None) -> None:
    """The hazard ratio against the cohort's median patient (Cox runs), with the fold range."""
    if not run.proportional_hazards:
        return
    hr, lo, hi = pred.hazard_ratios(pid, fold)
    col.metric(
        "hazard ratio vs median patient",
        fmt_hr(hr),
        None if np.isnan(lo) else f"folds {fmt_hr(lo)}–{fmt_hr(hi)}",
        help=(
            "How many times the hazard of the cohort's median patient (the median predicted risk "
            "of the model's training patients) this patient has, at every time (Cox model: "
            "proportional hazards). 1× = the median patient."
        ),
        delta_color="off",
        delta_arrow="off",
    )


def report_sidebar(run: RunData) -> None:
    """The run report (``multimodal report RUN_DIR``): a download when it exists, else the
    command that writes it."""
    path = run.report_path
    if path.is_file():
        st.download_button(
            "Download the run report (HTML)",
            data=lambda: path.read_bytes(),
            file_name=f"{run.name}_report.html",
            mime="text/html",
            key="dl_report",
            help="Model card of the run: data, missing inputs, performance, calibration, limits.",
        )
    else:
        st.caption("No run report yet. Write it with:")
        try:  # the path as the user would type it, from where the dashboard was started
            shown = run.run_dir.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = run.run_dir
        st.code(f"multimodal report {shown}", language="bash", wrap_lines=True)


def fmt_time(t: float, unit: str) -> str:
    return vocabulary.fmt_time(t, unit)
