"""Read a run folder for the dashboard: config, metrics, predictions, history and the cohort.

Only artefacts are read; nothing is trained or written. Every failure to read the folder raises
:class:`~multimodal.exceptions.RunFolderError` with a message meant for the page (what is missing
and how to get it), never a traceback.

Out-of-fold table
-----------------
``predictions.csv`` holds one row per (patient, fold): the fold's training patients
(``split = train``) and its validation patients (``split = val``). The dashboard's cohort view uses
each patient's *validation* row (an honest out-of-fold prediction). Cox risks are defined up to a
constant per fold model, so validation risks are centred on the mean training risk of their fold
(the convention of :class:`multimodal.models.run.TrainedModel`) before they are pooled.

Landmark runs
-------------
A run trained with ``data.landmark`` (dynamic prediction, :mod:`multimodal.data.landmark`) has
one row per (patient, landmark): ``patient_id`` is ``"<patient>@<s>"``, ``landmark_patient``
the patient and ``landmark`` the landmark ``s``; ``time``/``event`` count from the landmark and
stop at the horizon. :meth:`RunData.oof` then has one row per *patient* (its validation row at its
earliest landmark; percentiles among the fold's training rows of every landmark), and
:meth:`RunData.at_landmark` is the run as seen at one landmark: a plain run of the patients
followed at ``s``, keyed by patient, whose C-index is the run's ``c_index_lm<s>``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from multimodal.data.landmark import LANDMARK_COLUMN, PATIENT_COLUMN
from multimodal.evaluation.dynamic import landmark_key
from multimodal.exceptions import MultimodalError, RunFolderError
from multimodal.runfolder import RunFolder

__all__ = ["Endpoint", "LandmarkSetup", "RunData", "find_cohort", "load_run_data"]

log = logging.getLogger(__name__)

_REQUIRED = ("patient_id", "time", "event", "risk")
_ENDPOINTS = ("os", "pfs", "dss")
_SURV = re.compile(r"^surv_(?:(?P<ep>[a-z]+)_)?(?P<t>[0-9.eE+-]+)$")


@dataclass(frozen=True)
class Endpoint:
    """Where one endpoint's values live in ``predictions.csv``.

    Attributes
    ----------
    name : ``"os"``, ``"pfs"``, ...
    risk, time, event : column names (risk higher = worse).
    surv : eval time -> column holding S(t).
    """

    name: str
    risk: str
    time: str
    event: str
    surv: dict[float, str]

    @property
    def label(self) -> str:
        return {
            "os": "overall survival",
            "pfs": "progression-free survival",
            "dss": "disease-specific survival",
        }.get(self.name, self.name)


@dataclass(frozen=True)
class LandmarkSetup:
    """How a landmark run was trained (``data.landmark`` of its config).

    Attributes
    ----------
    times : the training landmarks (cohort time unit).
    horizon : predictions reach ``horizon`` after the landmark (S(s + t | alive at s), t <=
        horizon).
    eval_times : the landmarks the per-landmark metrics were computed at (the training
        landmarks when the config names none).
    """

    times: list[float]
    horizon: float
    eval_times: list[float]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LandmarkSetup | None:
        raw = (config.get("data") or {}).get("landmark")
        if not isinstance(raw, dict) or raw.get("horizon") is None:
            return None
        times = [float(t) for t in raw.get("times") or []]
        evals = raw.get("eval_times")
        return cls(times, float(raw["horizon"]), [float(t) for t in evals] if evals else times)


@dataclass
class RunData:
    """What the dashboard knows about a run, read from its folder.

    Attributes
    ----------
    run_dir : the folder.
    config : resolved config (``config.yaml`` without ``_meta``). meta : ``_meta``.
    metrics : ``metrics.json`` (empty when absent). history : ``history.csv`` or None.
    predictions : ``predictions.csv`` with ``patient_id`` as str.
    endpoints : the endpoints found in the predictions (first = the run's main endpoint).
    cohort_path : the cohort the run was trained on, when found.
    time_unit : unit of ``time`` (``"months"`` unless the cohort says otherwise).
    notes : things the page should tell the user (e.g. the cohort could not be found).
    landmark_at : for the view of a landmark run at one landmark (:meth:`at_landmark`): that
        landmark; None otherwise.
    """

    run_dir: Path
    config: dict[str, Any]
    meta: dict[str, Any]
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    history: pd.DataFrame | None
    endpoints: list[Endpoint]
    cohort_path: Path | None = None
    time_unit: str = "months"
    notes: list[str] = field(default_factory=list)
    landmark_at: float | None = None
    _oof: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    _views: dict[float, RunData] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def modalities(self) -> list[str]:
        return list(self.meta.get("modalities") or self.metrics.get("modalities") or [])

    def endpoint(self, name: str | None = None) -> Endpoint:
        """The endpoint called ``name`` (default: the main one)."""
        if name is None:
            return self.endpoints[0]
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise KeyError(f"endpoint {name!r} not in this run ({[e.name for e in self.endpoints]})")

    def oof(self, endpoint: str | None = None) -> pd.DataFrame:
        """Out-of-fold predictions, one row per patient (index patient_id).

        Columns: ``fold``, ``time``, ``event`` (bool), ``risk`` (raw), ``risk_centered`` (validation
        risk minus the mean training risk of its fold), ``percentile`` (share of the fold's
        training risks below it, 0-100), ``hazard_ratio`` (``exp(risk - median training risk of
        the fold)``: against the cohort's median patient; meaningful for Cox runs, see
        :attr:`proportional_hazards`) and ``surv_<t>`` for each eval time (renamed from the
        endpoint's columns).
        """
        ep = self.endpoint(endpoint)
        if ep.name not in self._oof:
            self._oof[ep.name] = _out_of_fold(self.predictions, ep)
        return self._oof[ep.name]

    def training_rows(self, endpoint: str | None = None) -> pd.DataFrame:
        """Rows of ``predictions.csv`` where the patient was in the fold's training part
        (columns fold, risk, risk_centered); empty when the run saved validation rows only."""
        ep = self.endpoint(endpoint)
        p = self.predictions
        if "split" not in p or "fold" not in p:
            return pd.DataFrame(columns=["fold", "risk", "risk_centered"])
        tr = p.loc[p["split"].astype(str) == "train", ["fold", ep.risk]].rename(
            columns={ep.risk: "risk"}
        )
        tr = tr[np.isfinite(tr["risk"].to_numpy(float))]
        tr["risk_centered"] = tr["risk"] - tr.groupby("fold")["risk"].transform("mean")
        return tr

    def fold_table(self, endpoint: str | None = None) -> pd.DataFrame:
        """Every row of ``predictions.csv`` (every fold model's prediction of every patient it
        scored), index patient_id: ``fold``, ``split``, ``risk`` (the endpoint's), ``risk_centered``
        (minus the mean training risk of the fold) and the endpoint's ``surv_*`` columns under
        their own names."""
        ep = self.endpoint(endpoint)
        key = f"folds:{ep.name}"
        if key not in self._oof:
            p = self.predictions
            fold = p["fold"] if "fold" in p else pd.Series(0, index=p.index)
            split = p["split"].astype(str) if "split" in p else pd.Series("val", index=p.index)
            out = pd.DataFrame(
                {"fold": fold.to_numpy(), "split": split.to_numpy(), "risk": p[ep.risk].to_numpy()},
                index=pd.Index(p["patient_id"].astype(str), name="patient_id"),
            )
            for col in ep.surv.values():
                out[col] = p[col].to_numpy(float)
            train = out["split"] == "train"
            ref = out["risk"].where(train) if train.any() else out["risk"]
            out["risk_centered"] = out["risk"] - ref.groupby(out["fold"]).transform("mean")
            self._oof[key] = out
        return self._oof[key]

    def reference_risks(self, endpoint: str | None = None) -> dict[int, float]:
        """Fold -> the median centred risk of the fold model's training patients: the cohort's
        median patient, against whom hazard ratios are stated (the validation patients of the
        fold when the run saved no training rows)."""
        table = self.fold_table(endpoint)
        train = table[table["split"] == "train"]
        ref = train if len(train) else table
        ref = ref[np.isfinite(ref["risk_centered"].to_numpy(float))]
        return {int(k): float(v) for k, v in ref.groupby("fold")["risk_centered"].median().items()}

    def pooled_reference(self, endpoint: str | None = None) -> float:
        """The median of every fold's centred training risks: the median patient on the scale of
        the fold ensemble's risk (:meth:`TrainedModel.predict`), for new patients."""
        tr = self.training_rows(endpoint)
        values = tr["risk_centered"].to_numpy(float) if len(tr) else np.array([])
        if values.size == 0:
            values = self.oof(endpoint)["risk_centered"].to_numpy(float)
        values = values[np.isfinite(values)]
        return float(np.median(values)) if values.size else float("nan")

    def survival_at(self, t: float, endpoint: str | None = None) -> pd.Series:
        """Out-of-fold predicted S(t) of every patient (index patient_id) at any ``t`` up to the
        last evaluation time: linear interpolation between the run's evaluation times (S(0) = 1);
        NaN beyond the last one."""
        ep = self.endpoint(endpoint)
        oof = self.oof(ep.name)
        times = np.asarray([0.0, *sorted(ep.surv)], float)
        if t > times[-1] + 1e-9 or t < 0:
            return pd.Series(np.nan, index=oof.index, name=f"S({t:g})")
        s = np.column_stack(
            [np.ones(len(oof))] + [oof[f"surv_{u:g}"].to_numpy(float) for u in sorted(ep.surv)]
        )
        j = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
        w = (t - times[j]) / (times[j + 1] - times[j]) if len(times) > 1 else 0.0
        values = s[:, j] + w * (s[:, j + 1] - s[:, j]) if len(times) > 1 else s[:, 0]
        return pd.Series(values, index=oof.index, name=f"S({t:g})")

    # ------------------------------------------------------------------------- landmark runs
    @property
    def is_landmark(self) -> bool:
        """Whether the predictions are (patient, landmark) rows of a landmark run."""
        return PATIENT_COLUMN in self.predictions.columns and LANDMARK_COLUMN in self.predictions

    @property
    def landmark_setup(self) -> LandmarkSetup | None:
        """The run's ``data.landmark`` (None for a run without landmarking)."""
        return LandmarkSetup.from_config(self.config)

    @property
    def landmarks(self) -> list[float]:
        """The landmarks of the predictions' rows, in order (empty for other runs)."""
        if not self.is_landmark:
            return []
        s = pd.to_numeric(self.predictions[LANDMARK_COLUMN], errors="coerce").to_numpy(float)
        return [float(v) for v in np.unique(s[np.isfinite(s)])]

    @property
    def horizon(self) -> float | None:
        """A landmark run's horizon (how far after the landmark it predicts); None otherwise."""
        setup = self.landmark_setup
        return setup.horizon if setup is not None and self.is_landmark else None

    def landmark_rows(self, patient_id: str) -> pd.DataFrame:
        """A landmark run's rows of one patient (every fold, split and landmark), by landmark;
        empty for other runs."""
        p = self.predictions
        if not self.is_landmark:
            return p.iloc[:0]
        rows = p[p[PATIENT_COLUMN].astype(str) == str(patient_id)]
        return rows.sort_values(LANDMARK_COLUMN, kind="stable")

    def at_landmark(self, landmark: float) -> RunData:
        """The run at one landmark ``s``: the rows of the patients followed at ``s`` as a plain
        run keyed by patient (outcomes from ``s``, up to the horizon). Its folds' ``c_index`` is
        the run's ``c_index_lm<s>`` (recomputed from the rows when the run did not score that
        landmark); the metrics over every landmark's rows (Uno's C, IBS, td-AUC) are left out.

        Raises
        ------
        KeyError
            ``landmark`` is not one of :attr:`landmarks`.
        """
        s = float(landmark)
        if s in self._views:
            return self._views[s]
        known = np.asarray(self.landmarks)
        if not known.size or not np.isclose(known, s).any():
            raise KeyError(f"landmark {s:g} is not one of the run's landmarks {self.landmarks}")
        p = self.predictions
        rows = p[np.isclose(pd.to_numeric(p[LANDMARK_COLUMN], errors="coerce"), s)].copy()
        rows["patient_id"] = rows.pop(PATIENT_COLUMN).astype(str)
        rows = rows.drop(columns=[LANDMARK_COLUMN])
        view = RunData(
            run_dir=self.run_dir,
            config=self.config,
            meta=self.meta,
            metrics=_metrics_at(self.metrics, s),
            predictions=rows.reset_index(drop=True),
            history=self.history,
            endpoints=_endpoints(rows, self.endpoint().name),
            cohort_path=self.cohort_path,
            time_unit=self.time_unit,
            landmark_at=s,
        )
        self._views[s] = view
        return view

    @property
    def proportional_hazards(self) -> bool:
        """Whether ``risk`` is a Cox log-hazard (head ``cox``): then hazard ratios and effects in
        points of event probability are exact; other heads get risk-score wording."""
        head = (self.config.get("head") or {}).get("name", "cox")
        endpoint = str(self.config.get("endpoint") or "os")
        return head == "cox" and endpoint not in ("competing", "multistate")

    @property
    def report_path(self) -> Path:
        """Where ``multimodal report RUN_DIR`` writes the run report (it may not exist)."""
        return self.run_dir / "report.html"

    @property
    def eval_times(self) -> list[float]:
        return sorted(self.endpoint().surv)

    @property
    def max_time(self) -> float:
        t = self.predictions[self.endpoint().time].to_numpy(float)
        t = t[np.isfinite(t)]
        return float(t.max()) if t.size else 1.0


def _read_predictions(folder: RunFolder) -> pd.DataFrame:
    """The run's predictions, checked for the columns the dashboard needs."""
    frame = folder.read_predictions()
    path = folder.predictions_path
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise RunFolderError(
            f"{path} lacks column(s) {', '.join(missing)}; a run's predictions.csv has "
            "patient_id, fold, split, time, event, risk, surv_<t>"
        )
    if frame.empty:
        raise RunFolderError(f"{path} holds no rows")
    for col in ("time", "risk"):
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise RunFolderError(f"{path}: column {col!r} is not numeric")
    return frame


def _endpoints(frame: pd.DataFrame, main: str) -> list[Endpoint]:
    """Endpoints present in a predictions table.

    The main endpoint uses ``risk``, ``time``, ``event`` and ``surv_<t>``. Others appear as
    ``risk_<ep>`` with ``surv_<ep>_<t>`` and ``<ep>_time``/``<ep>_event`` (or ``time_<ep>``).
    """
    surv: dict[str | None, dict[float, str]] = {}
    for col in frame.columns:
        m = _SURV.match(str(col))
        if m:
            try:
                surv.setdefault(m.group("ep"), {})[float(m.group("t"))] = str(col)
            except ValueError:
                continue
    out = [Endpoint(main, "risk", "time", "event", surv.get(None, {}))]
    for ep in _ENDPOINTS:
        if ep == main or f"risk_{ep}" not in frame.columns:
            continue
        tcol = next((c for c in (f"{ep}_time", f"time_{ep}") if c in frame.columns), None)
        ecol = next((c for c in (f"{ep}_event", f"event_{ep}") if c in frame.columns), None)
        if tcol is None or ecol is None:
            continue
        out.append(Endpoint(ep, f"risk_{ep}", tcol, ecol, surv.get(ep, {})))
    return out


def _metrics_at(metrics: dict[str, Any], landmark: float) -> dict[str, Any]:
    """``metrics.json`` of a landmark run as seen at one landmark: ``c_index`` is that landmark's
    ``c_index_lm<s>`` (absent when it was not scored); the metrics over all rows are dropped."""
    c_key = f"c_index_{landmark_key(landmark)}"
    pooled = ("c_index", "uno_c", "td_auc", "ibs")

    def one(m: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in m.items() if k not in pooled and not k.startswith(pooled)}
        if m.get(c_key) is not None:
            out["c_index"] = m[c_key]
        return out

    out = one(metrics)
    out["folds"] = [one(f) for f in metrics.get("folds") or []]
    return out


def _out_of_fold(pred: pd.DataFrame, ep: Endpoint) -> pd.DataFrame:
    p = pred
    has_split = "split" in p.columns and "fold" in p.columns
    val = p[p["split"].astype(str).isin(["val", "validation", "test"])] if has_split else p
    if val.empty:
        val = p
    if PATIENT_COLUMN in val.columns and LANDMARK_COLUMN in val.columns:
        # a landmark run: one row per patient, its earliest landmark (every row of the fold's
        # training part, all landmarks, stays the reference of percentiles and hazard ratios)
        val = val.sort_values(LANDMARK_COLUMN, kind="stable").assign(
            patient_id=lambda f: f[PATIENT_COLUMN].astype(str)
        )
    cols = {ep.time: "time", ep.event: "event", ep.risk: "risk"}
    cols.update({c: f"surv_{t:g}" for t, c in ep.surv.items()})
    fold = val["fold"] if "fold" in val else pd.Series(0, index=val.index)
    out = (
        val[list(cols)]
        .rename(columns=cols)
        .assign(fold=fold.to_numpy(), patient_id=val["patient_id"])
    )
    out = out[np.isfinite(out["time"].to_numpy(float)) & out["event"].notna()]
    out = out.groupby("patient_id", sort=False).first()  # repeated CV: first validation row
    out["event"] = out["event"].astype(bool)
    out["time"] = out["time"].astype(float)
    train = (
        p.loc[p["split"].astype(str) == "train", ["fold", ep.risk]]
        if has_split
        else pd.DataFrame(columns=["fold", ep.risk])
    )
    out["risk_centered"] = np.nan
    out["percentile"] = np.nan
    out["hazard_ratio"] = np.nan
    for k, part in out.groupby("fold"):
        ref = train.loc[train["fold"] == k, ep.risk].to_numpy(float)
        ref = np.sort(ref[np.isfinite(ref)])
        if ref.size == 0:  # no training rows: the validation patients are their own reference
            ref = np.sort(part["risk"].to_numpy(float))
        r = part["risk"].to_numpy(float)
        out.loc[part.index, "risk_centered"] = r - ref.mean()
        out.loc[part.index, "percentile"] = 100.0 * np.searchsorted(ref, r, side="left") / ref.size
        # hazard ratio against the fold model's median training patient
        out.loc[part.index, "hazard_ratio"] = np.exp(np.clip(r - np.median(ref), -50, 50))
    return out


def find_cohort(
    run_dir: Path,
    config: dict[str, Any],
    explicit: str | Path | None = None,
    recorded: str | Path | None = None,
) -> Path | None:
    """Where the run's cohort lives: ``explicit``, else ``data.cohort`` of the config (absolute,
    or relative to the working directory or the run folder), else the folder ``train`` recorded
    (``_meta.cohort_path``), else a ``cohort/`` folder next to the run (the demo layout
    ``runs/demo/{cohort,fusion}``)."""
    from multimodal.data.cohort import locate_cohort, locate_run_cohort

    if explicit:
        try:
            return locate_cohort(explicit)[1]
        except MultimodalError:
            pass
    return locate_run_cohort(run_dir, config, recorded)


def load_run_data(run_dir: str | Path, cohort: str | Path | None = None) -> RunData:
    """Read the artefacts of a run folder.

    Parameters
    ----------
    run_dir : folder written by ``multimodal train``.
    cohort : the cohort (manifest or TCGA folder) when it is not where the run says.

    Raises
    ------
    RunFolderError
        The folder is missing, or its config or predictions are missing or unreadable.
    """
    folder = RunFolder(run_dir).require()
    run_dir = folder.path
    config = folder.read_config_raw()
    meta = config.pop("_meta", None) or {}
    metrics = folder.read_metrics() if folder.metrics_path.is_file() else {}
    predictions = _read_predictions(folder)
    try:
        history = folder.read_history()
    except RunFolderError:  # the history is optional on the pages: an unreadable one is left out
        history = None
    main = str(metrics.get("endpoint") or config.get("endpoint") or "os")
    data = RunData(
        run_dir=run_dir,
        config=config,
        meta=meta,
        metrics=metrics,
        predictions=predictions,
        history=history,
        endpoints=_endpoints(predictions, main),
    )
    if not metrics:
        data.notes.append("metrics.json is missing: run `multimodal evaluate RUN_DIR` to add it.")
    data.cohort_path = find_cohort(run_dir, config, cohort, meta.get("cohort_path"))
    if data.cohort_path is None:
        data.notes.append(
            "The run's cohort was not found (config data.cohort, or a cohort/ folder next to the "
            "run); patient details, evidence and filters need it: start the dashboard with "
            "--cohort PATH."
        )
    else:
        data.time_unit = _time_unit(data.cohort_path)
    return data


def _time_unit(path: Path) -> str:
    """The unit of the cohort's times: ``patients.time_unit`` of a manifest; years for the Mayo
    PBC file (:mod:`multimodal.data.pbc` reads its ``years`` column); else months."""
    if path.name.lower() in ("pbc2.csv", "pbc2.csv.gz"):
        return "years"
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            unit = (raw.get("patients") or {}).get("time_unit")
            if unit:
                return str(unit)
        except (OSError, yaml.YAMLError, AttributeError):
            pass
    return "months"
