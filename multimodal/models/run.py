"""Reload a trained run and predict for any cohort: ``multimodal.load_run(RUN_DIR)``.

The run folder alone (``config.yaml`` + ``model/fold_<k>/``) rebuilds every fold's model and its
fitted preprocessing, on any device. Predictions average the fold models (a cross-validation
ensemble): survival curves are averaged; risks are centred on each model's mean training risk
before averaging, because Cox risks are only defined up to a constant.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal import console
from multimodal.config import Config, EncoderConfig
from multimodal.exceptions import ConfigError, DataError, MultimodalError, RunFolderError
from multimodal.models.inference import head_outputs, prediction_columns
from multimodal.models.input_checks import check_inputs, status_summary
from multimodal.models.model import MultimodalSurvivalModel, spec_from_dict
from multimodal.runfolder import RunFolder
from multimodal.survival.endpoints import get_endpoint
from multimodal.training.preprocess import PIPELINES, FoldData, PreprocessContext
from multimodal.training.stores import DenseStore, DictStore, ModalityStore, TokenStore
from multimodal.types import InputSpec

__all__ = ["FoldModel", "TrainedModel", "load_run", "median_survival"]

log = logging.getLogger(__name__)


@dataclass
class FoldModel:
    index: int
    model: MultimodalSurvivalModel
    pipelines: dict[str, Any]
    risk_center: float
    risk_centers: dict[str, float] = field(default_factory=dict)
    """Mean training risk of each named risk (``risk_os``, ...) of the progression endpoints."""


def median_survival(survival: np.ndarray, times: np.ndarray) -> np.ndarray:
    """First time where S(t) <= 0.5 (linear interpolation); NaN when S stays above 0.5."""
    out = np.full(survival.shape[0], np.nan)
    below = survival <= 0.5
    has = below.any(axis=1)
    j = below.argmax(axis=1)
    for i in np.flatnonzero(has):
        k = j[i]
        if k == 0:
            out[i] = times[0]
            continue
        s0, s1, t0, t1 = survival[i, k - 1], survival[i, k], times[k - 1], times[k]
        out[i] = t0 + (s0 - 0.5) / max(s0 - s1, 1e-12) * (t1 - t0)
    return out


def _empty_store(spec: InputSpec, n: int) -> ModalityStore:
    """All-missing store for a modality the new cohort does not have."""
    present = np.zeros(n, dtype=bool)
    if spec.kind == "clinical":
        values = {
            "numeric": torch.zeros(n, spec.n_numeric),
            "numeric_missing": torch.ones(n, spec.n_numeric),
            "categorical": torch.zeros(n, len(spec.cardinalities), dtype=torch.long),
        }
        return DictStore(spec=spec, present=present, values=values)
    if spec.kind == "text" and spec.in_features is None:  # tokenized input (text_transformer)
        values = {
            "input_ids": torch.zeros(n, 1, dtype=torch.long),
            "attention_mask": torch.ones(n, 1, dtype=torch.long),
        }
        return DictStore(spec=spec, present=present, values=values)
    if spec.kind == "longitudinal":
        v = int(spec.n_variables or 0)
        values = {
            "summary": torch.zeros(n, spec.in_features),
            "values": torch.zeros(n, 1, v),
            "observed": torch.zeros(n, 1, v, dtype=torch.bool),
            "before": torch.zeros(n, 1),
            "gap": torch.zeros(n, 1),
            "visits": torch.zeros(n, 1, dtype=torch.bool),
        }
        return DictStore(spec=spec, present=present, values=values)
    if spec.tokens:
        return TokenStore(spec=spec, present=present, values=[torch.zeros(0, spec.in_features)] * n)
    if spec.kind == "imaging" and spec.in_features is None:
        shape = (spec.in_channels, *spec.image_size)
        return DenseStore(spec=spec, present=present, values=torch.zeros(n, *shape))
    return DenseStore(spec=spec, present=present, values=torch.zeros(n, spec.in_features))


class TrainedModel:
    """A trained run: fold models + preprocessing; predicts risk and survival for a cohort."""

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        folds: list[FoldModel],
        times: list[float],
        device: str | torch.device = "cpu",
    ):
        self.run_dir, self.config, self.folds, self.times = run_dir, config, folds, times
        self.device = torch.device(device)

    @property
    def modalities(self) -> list[str]:
        return self.folds[0].model.modalities

    def fold_data(self, fm: FoldModel, cohort: Any, ids: list[str]) -> FoldData:
        """Patients ``ids`` of ``cohort`` preprocessed with fold model ``fm``'s fitted pipelines
        (a modality the cohort lacks is all-missing); outcomes where the cohort has them. A
        landmark model sees a cohort that was not landmarked at each patient's latest
        measurement (see :meth:`predict` for other landmarks)."""
        cohort = self._landmark_view(cohort)
        stores = {}
        for m in fm.model.modalities:
            if m in getattr(cohort, "sources", {}):
                stores[m] = fm.pipelines[m].transform(cohort.sources[m], ids)
            else:
                stores[m] = _empty_store(fm.model.specs[m], len(ids))
        pt = cohort.patients.reindex(ids)
        time = pt["time"].to_numpy(float) if "time" in pt else np.full(len(ids), np.nan)
        event = (
            pt["event"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            if "event" in pt
            else np.zeros(len(ids), bool)
        )
        return FoldData(ids=ids, time=time, event=event, stores=stores)

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    def predict(
        self,
        cohort: Any,
        times: list[float] | None = None,
        horizons: list[float] | None = None,
        strict: bool = False,
        landmark: float | pd.Series | str | None = None,
    ) -> pd.DataFrame:
        """Per patient: risk (higher = worse), S(t) at ``times``, predicted median survival.

        The inputs are checked first against what the model was trained on
        (:func:`multimodal.models.input_checks.check_inputs`: ranges, levels, columns,
        modalities). A patient with an error (a non-finite or implausible value, a table whose
        columns were renamed, ...) is refused: NaN risk and curves. Outcomes (``time``/``event``)
        are never needed.

        Parameters
        ----------
        cohort : the patients (``Cohort.load(path, require_outcomes=False)`` for new patients).
        times : times of S(t) (default: the run's evaluation times).
        horizons : progression endpoints' ``p_progression_<h>`` horizons (default
            ``eval.horizons``).
        strict : raise :class:`~multimodal.exceptions.DataError` listing the problems when any
            patient has a warning or an error (a landmark after the model's last training
            landmark, or a patient not at risk at the landmark, included), instead of predicting.
            Without it, a prediction with any such patient logs a warning (logger
            ``multimodal.models.run``) that counts them and names the landmark problems, so that
            :meth:`predict_survival`, :meth:`predict_risk` and :meth:`predict_cif`, which drop
            the ``status`` column, never return flagged values silently.
        landmark : a landmark model (trained with ``data.landmark``) predicts from what was
            measured up to the landmark, for patients alive then: a time for everyone, a Series
            patient_id -> time, or ``"last"`` (the default: each patient's latest measurement,
            "from today"). ``times`` then count from the landmark (S(s + t | alive at s)) and go
            up to the model's horizon. Patients whose known follow-up ends by their landmark are
            refused. See :func:`multimodal.data.landmark.landmark_cohort`.

        Returns
        -------
        DataFrame, one row per patient: ``patient_id``, ``risk``, ``surv_<t>``,
        ``median_survival``, ``modalities_present`` (the modalities actually used for the
        patient, comma-separated), ``status`` (``ok`` | ``warning`` | ``refused``) and
        ``input_issues`` (the messages, `` | ``-separated; "" when none). Progression endpoints
        (multitask, competing, multistate) add their named risks and curves (``risk_os``,
        ``surv_pfs_<t>``, ``cif_progression_<t>``, ``state_<state>_<t>``, ...) and
        ``p_progression_<h>`` at ``horizons``; see :mod:`multimodal.survival.endpoints`.
        """
        cohort, not_at_risk, extrapolated = self._at_landmark(cohort, landmark, times)
        report = check_inputs(self, cohort)
        landmark_issues = self._landmark_issues(not_at_risk, extrapolated)
        if strict and (len(report.issues) or landmark_issues):
            found = [report.describe(limit=10)] if len(report.issues) else []
            problems = "\n  ".join(found + landmark_issues).lstrip()
            raise DataError(
                f"strict mode refuses inputs with issues: {problems}\n"
                "Fix the inputs, or predict without strict mode (CLI: without --strict): refused "
                "patients then get NaN predictions, and every patient a status and input_issues."
            )
        refused = report.refused()
        with console.run_scope():  # a preprocessing warning once per call, not once per fold
            frame = self._predict_frame(_usable_cohort(cohort, report, refused), times, horizons)
        outputs = [c for c in frame.columns if c not in ("patient_id", "modalities_present")]
        rows = frame["patient_id"].isin(refused).to_numpy()
        frame.loc[rows, outputs] = np.nan
        frame["status"] = report.status().to_numpy()
        frame["input_issues"] = report.messages().to_numpy()
        frame = self._flag_landmarks(frame, cohort, not_at_risk, extrapolated)
        if (frame["status"] != "ok").any():
            log.warning(
                "predict: %s (see the status and input_issues columns)%s",
                status_summary(frame["status"]),
                "".join(f"; {issue}" for issue in landmark_issues),
            )
        return frame

    def _landmark_issues(self, not_at_risk: pd.DataFrame, extrapolated: list[str]) -> list[str]:
        """The landmark problems of a prediction, one line each (empty when none): patients
        predicted beyond the model's last training landmark, patients not at risk then."""
        issues = []
        if extrapolated:
            last = max(self.config.data.landmark.times)
            issues.append(
                f"warning: {len(extrapolated)} patient(s) at a landmark after the last one the "
                f"model was trained at ({last:g}): their predictions extrapolate (e.g. "
                f"{', '.join(extrapolated[:3])})"
            )
        if len(not_at_risk):
            issues.append(
                f"error: {len(not_at_risk)} patient(s) not alive and followed at their landmark, "
                f"refused (e.g. {', '.join(map(str, not_at_risk.index[:3]))})"
            )
        return issues

    def _flag_landmarks(
        self,
        frame: pd.DataFrame,
        cohort: Any,
        not_at_risk: pd.DataFrame,
        extrapolated: list[str],
    ) -> pd.DataFrame:
        """``frame`` with a landmark model's ``landmark`` column, its extrapolated predictions
        flagged (``warning``) and a refused row for each patient not at risk at the landmark."""
        if "landmark" in cohort.patients and self.config.data.landmark is not None:
            frame.insert(
                1, "landmark", cohort.patients["landmark"].reindex(frame["patient_id"]).to_numpy()
            )
            late = frame["patient_id"].isin(extrapolated).to_numpy()
            frame.loc[late & (frame["status"] == "ok").to_numpy(), "status"] = "warning"
            note = (
                f"landmark after the last one the model was trained at "
                f"({max(self.config.data.landmark.times):g}): the prediction extrapolates"
            )
            frame.loc[late, "input_issues"] = [
                f"{old} | {note}" if old else note for old in frame.loc[late, "input_issues"]
            ]
        if len(not_at_risk):
            gone = pd.DataFrame({"patient_id": list(not_at_risk.index)})
            gone["status"] = "refused"
            gone["input_issues"] = [
                f"not alive and followed at the landmark {s:g} (follow-up ends at {t:g})"
                for s, t in zip(not_at_risk["landmark"], not_at_risk["time"])
            ]
            frame = pd.concat([frame, gone], ignore_index=True)
        return frame

    def _landmark_view(self, cohort: Any) -> Any:
        """A landmark model's view of a cohort that is not landmarked: each patient at the
        latest measurement, every patient kept, outcomes as given."""
        from multimodal.data.landmark import LANDMARK_COLUMN, landmark_cohort

        if self.config.data.landmark is None or LANDMARK_COLUMN in cohort.patients:
            return cohort
        if not any(s.kind == "longitudinal" for s in getattr(cohort, "sources", {}).values()):
            return cohort
        return landmark_cohort(cohort, "last", None, False, outcome_columns=())

    def _at_landmark(
        self, cohort: Any, landmark: Any, times: list[float] | None
    ) -> tuple[Any, pd.DataFrame, list[str]]:
        """``cohort`` at its landmark(s) for a landmark model, the patients whose known
        follow-up ends by then (with their landmark and time), and those whose landmark is after
        the model's last training landmark; ``cohort`` as it is otherwise."""
        from multimodal.data.landmark import LANDMARK_COLUMN, landmark_cohort

        lm = self.config.data.landmark
        empty = pd.DataFrame(columns=["landmark", "time"])
        if lm is None:
            if landmark is not None:
                raise ConfigError(
                    "landmark= is for models trained with data.landmark (dynamic prediction); "
                    "this run predicts from baseline data"
                )
            return cohort, empty, []
        if times is not None and max(times) > lm.horizon + 1e-9:
            raise ConfigError(
                f"times {list(times)}: this landmark model predicts up to its horizon "
                f"{lm.horizon:g} after the landmark; ask for times <= {lm.horizon:g}"
            )
        if LANDMARK_COLUMN in cohort.patients:  # already landmarked (e.g. a training view)
            return cohort, empty, []
        if landmark is None:
            has_longitudinal = any(s.kind == "longitudinal" for s in cohort.sources.values())
            landmark = "last" if has_longitudinal else 0.0
        endpoint = get_endpoint(self.endpoint)
        at = landmark_cohort(cohort, landmark, None, False, endpoint.required_columns)
        s_all = at.patients[LANDMARK_COLUMN]
        beyond = s_all[s_all > max(lm.times) + 1e-9]
        gone_ids = cohort.patients.index.difference(at.patients.index)
        if isinstance(landmark, pd.Series):
            s_gone = landmark.reindex(gone_ids).to_numpy(float)
        elif isinstance(landmark, str):
            s_gone = np.full(len(gone_ids), np.nan)
        else:
            s_gone = np.full(len(gone_ids), float(landmark))
        gone = pd.DataFrame(
            {"landmark": s_gone, "time": cohort.patients.loc[gone_ids, "time"].to_numpy(float)}
            if len(gone_ids)
            else {"landmark": [], "time": []},
            index=gone_ids,
        )
        return at, gone, [str(i) for i in beyond.index]

    @torch.no_grad()
    def _predict_frame(
        self, cohort: Any, times: list[float] | None, horizons: list[float] | None
    ) -> pd.DataFrame:
        """The ensemble's predictions for every patient of ``cohort``, inputs used as they are."""
        times = list(times) if times is not None else list(self.times)
        horizons = list(horizons) if horizons is not None else list(self.config.eval.horizons)
        ids = [str(i) for i in cohort.patients.index]
        grid = np.unique(
            np.concatenate([times, np.linspace(0, max(self._max_time(), max(times)), 200)])
        )
        endpoint = get_endpoint(self.endpoint)
        risks: list[dict[str, np.ndarray]] = []
        curves: list[dict[str, np.ndarray]] = []
        for fm in self.folds:
            out = head_outputs(fm.model, self.fold_data(fm, cohort, ids), self.device, "32")
            r, c = endpoint.predictions(fm.model.head, out, grid, horizons)
            # Cox risks are defined up to a constant: centre each fold model on its training mean
            r = {
                k: v - (fm.risk_center if k == "risk" else fm.risk_centers.get(k, 0.0))
                for k, v in r.items()
            }
            risks.append(r)
            curves.append(c)
        at = np.searchsorted(grid, times)
        mean_risks = {k: np.mean([r[k] for r in risks], axis=0) for k in risks[0]}
        mean_curves = {
            k: np.mean([c[k] for c in curves], axis=0)[
                :, at if k != "p_progression" else slice(None)
            ]
            for k in curves[0]
        }
        frame = pd.DataFrame(
            {"patient_id": ids, **prediction_columns(mean_risks, mean_curves, times, horizons)}
        )
        surv = np.mean([c["surv"] for c in curves], axis=0)
        frame["median_survival"] = median_survival(surv, grid)
        have = {m: set(map(str, s.patient_ids)) for m, s in cohort.sources.items()}
        frame["modalities_present"] = [
            ",".join(m for m in self.modalities if pid in have.get(m, ())) for pid in ids
        ]
        return frame

    def predict_risk(self, cohort: Any, strict: bool = False) -> pd.Series:
        """Risk per patient (index patient_id), higher = worse prognosis; NaN for patients whose
        inputs are refused (see :meth:`predict`)."""
        return self.predict(cohort, strict=strict).set_index("patient_id")["risk"]

    def predict_survival(
        self,
        cohort: Any,
        times: list[float],
        endpoint: str | None = None,
        strict: bool = False,
        landmark: float | pd.Series | str | None = None,
    ) -> pd.DataFrame:
        """S(t) per patient (rows, index patient_id) at ``times`` (columns); NaN rows for patients
        whose inputs are refused (see :meth:`predict`).

        ``landmark`` (landmark models): S(s + t | alive at s) from what was measured up to ``s``;
        ``times`` count from the landmark. ``model.predict_survival(cohort, landmark=2,
        times=[1, 3, 5])`` is the survival over the next 1, 3 and 5 years for patients alive
        at year 2.

        ``endpoint``: None (the run's primary endpoint), or ``"os"`` / ``"pfs"`` for a run of a
        progression endpoint that models it (multitask, multistate: both; competing: ``"pfs"``,
        the event-free survival).
        """
        frame = self.predict(cohort, times, strict=strict, landmark=landmark)
        frame = frame.set_index("patient_id")
        prefix = "surv"
        if endpoint is not None and endpoint != self.endpoint:
            prefix = f"surv_{endpoint}"
            if f"{prefix}_{times[0]:g}" not in frame:
                raise ValueError(
                    f"this run (endpoint {self.endpoint!r}) has no {endpoint!r} survival; "
                    "train with endpoint multitask or multistate for OS and PFS curves"
                )
        out = frame[[f"{prefix}_{t:g}" for t in times]]
        out.columns = list(times)
        return out

    def predict_cif(
        self, cohort: Any, times: list[float], cause: str = "progression"
    ) -> pd.DataFrame:
        """Cumulative incidence of ``cause`` ("progression" or "death" without progression) per
        patient (rows) at ``times`` (columns); runs of the competing or multistate endpoint."""
        from multimodal.survival.competing import CAUSES

        if cause not in CAUSES:
            raise ValueError(f"cause must be one of {CAUSES}; got {cause!r}")
        if not get_endpoint(self.endpoint).competing_causes:
            raise ValueError(
                f"this run (endpoint {self.endpoint!r}) has no cumulative incidences; train with "
                "endpoint competing or multistate"
            )
        frame = self.predict(cohort, times).set_index("patient_id")
        out = frame[[f"cif_{cause}_{t:g}" for t in times]]
        out.columns = list(times)
        return out

    def explain(
        self,
        cohort: Any,
        patient_ids: list[str] | None = None,
        horizons: list[float] | None = None,
        **options: Any,
    ) -> Any:
        """Explanations of the predictions for patients of ``cohort`` (averaged over the fold
        models): see :func:`multimodal.explain.explain` for ``options``. Returns an
        :class:`~multimodal.explain.Explanation`; ``.save(run_dir / "explanations")`` writes it."""
        from multimodal.explain import explain

        return explain(self, cohort, patient_ids=patient_ids, horizons=horizons, **options)

    def _max_time(self) -> float:
        head = self.folds[0].model.head
        cuts = getattr(head, "cuts", None)
        if cuts is not None and len(cuts):
            return float(torch.as_tensor(cuts).max())
        if getattr(head, "has_baseline", False) and hasattr(head, "bl_times"):
            return float(head.bl_times.max())
        return float(max(self.times)) * 1.5


def _usable_cohort(cohort: Any, report: Any, refused: list[str]) -> Any:
    """``cohort`` as the model may use it: refused patients' data and the data the input checks
    found unusable (renamed columns, empty rows, a modality of another kind) removed, the model's
    columns a table lacks added as missing values. ``cohort`` itself is not changed."""
    view = copy.copy(cohort)
    view.sources = {}
    drop_all = set(refused)
    for m, source in getattr(cohort, "sources", {}).items():
        drop = drop_all | report.unusable.get(m, set())
        keep = [i for i in map(str, source.patient_ids) if i not in drop]
        if not keep:
            continue
        usable = source.subset(keep) if len(keep) < len(source.patient_ids) else copy.copy(source)
        absent = report.missing_columns.get(m, [])
        if absent and getattr(source, "kind", "") == "clinical":  # preprocessor needs every column
            usable.table = usable.table.assign(**dict.fromkeys(absent, np.nan))
        view.sources[m] = usable
    return view


def load_run(run_dir: str | Path, device: str = "cpu", allow_partial: bool = False) -> TrainedModel:
    """Rebuild a trained run from its folder (``config.yaml`` + ``model/fold_<k>/``).

    Parameters
    ----------
    run_dir : the run folder.
    device : where the fold models go.
    allow_partial : predict from the folds that finished when some of the run's folds did not
        (an interrupted run); without it such a run is refused, naming the missing folds.

    Run folders of earlier releases load too: their config keys are moved to the current ones
    (:func:`multimodal.config.upgrade_legacy_config`) and their weight names renamed
    (:func:`multimodal.models.model.upgrade_state_dict`). A fold whose weights belong to another
    run (``run_id`` or weights hash) is refused.
    """
    run = RunFolder(run_dir).require()
    raw = run.read_config_raw()
    meta = raw.pop("_meta", None) or {}
    try:
        config = Config.model_validate(raw)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise RunFolderError(
            f"{run.config_path} cannot be read as a run config: {exc}. If it was written by a "
            "newer release of multimodal, load it with that release."
        ) from None
    finished = run.finished_folds()
    if not finished:
        raise RunFolderError(
            f"{run.model_dir} holds no finished fold (fold_<k>/fold.json); was training "
            "interrupted? Re-run the same train command to resume it."
        )
    missing = sorted(set(meta.get("folds") or []) - set(finished))
    if missing and not allow_partial:
        raise RunFolderError(
            f"{run.path}: fold(s) {missing} of this run did not finish (training was "
            f"interrupted), so its ensemble is incomplete. Re-run the same train command to "
            f"finish them, or pass --allow-partial (load_run(..., allow_partial=True)) to predict "
            f"from the finished fold(s) {finished} alone."
        )
    if missing:
        log.warning(
            "%s: predicting from folds %s only; %s did not finish", run.path, finished, missing
        )
    folds, times = [], []
    ctx = PreprocessContext.from_config(config)  # shared: one text model for every fold
    for k in finished:
        fold_run = run.read_fold_meta(k).get("run_id")
        if meta.get("run_id") and fold_run and fold_run != meta["run_id"]:
            raise RunFolderError(
                f"{run.fold_dir(k)} belongs to run {fold_run}, not to this run "
                f"({meta['run_id']}): it was copied from another run folder. Remove it and "
                "re-run the train command to train that fold here."
            )
        folds.append(_load_fold(run, k, config, ctx, device))
        times = run.read_fold_result(k)["eval_times"]
    return TrainedModel(run.path, config, folds, times, device)


def _load_fold(
    run: RunFolder, k: int, config: Config, ctx: PreprocessContext, device: str
) -> FoldModel:
    folder = run.fold_dir(k)
    meta, prep = run.read_fold_meta(k), run.read_fold_preprocess(k)
    retrain = f"delete {folder} and re-run the same `multimodal train` command to train it again"
    try:
        specs = {m: spec_from_dict(s) for m, s in meta["specs"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{folder}/model.json is incomplete ({exc!r}); {retrain}") from None
    missing = [m for m in specs if m not in prep]
    if missing:
        raise RunFolderError(
            f"{folder}/preprocess.json has no fitted preprocessing for modalities {missing}; "
            f"{retrain}"
        )
    pipes = {}
    for m, p in prep.items():
        try:
            pipes[m] = PIPELINES.get(p["kind"])(ctx, p["encoder"]).load_state(p["state"])
        except (MultimodalError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunFolderError(
                f"{folder}/preprocess.json: the state of modality {m!r} cannot be read "
                f"({str(exc) or repr(exc)}); {retrain}"
            ) from None
    enc = {m: config.encoders.get(m) or EncoderConfig(name=p["encoder"]) for m, p in prep.items()}
    model = MultimodalSurvivalModel(
        specs,
        enc,
        config.fusion,
        config.head,
        members=config.members,
        cuts=meta.get("cuts"),
        clinical_modality=meta.get("clinical_modality"),
        endpoint=config.endpoint,
    )
    try:
        model.load_state_dict(run.read_fold_weights(k))
    except RuntimeError as exc:  # weights of another model (shapes, names)
        raise RunFolderError(
            f"{folder}/weights.safetensors does not fit the model its config builds: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    model.to(device).eval()
    return FoldModel(
        int(meta["fold"]),
        model,
        pipes,
        float(meta.get("risk_center", 0.0)),
        dict(meta.get("risk_centers") or {}),
    )
