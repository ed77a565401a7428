"""Check a cohort's inputs against what a trained model was fitted on, before it predicts.

:func:`check_inputs` compares every patient's data with the fitted preprocessing of the run's fold
models (clinical: numeric columns with their training mean / SD / range, categorical levels;
genomics: the selected features with their training mean / SD / range) and returns an
:class:`InputReport`: one row per problem, naming the file, the patient and the column(s), what was
found and how to fix it. :meth:`~multimodal.models.run.TrainedModel.predict` runs it first.

Rules (numeric columns of the clinical and genomics modalities; the training range is the smallest
and largest finite value over the fold models' training patients):

=========================================================  ===========  ==========================
input                                                      severity     then
=========================================================  ===========  ==========================
value not finite (``inf``, ``-inf``)                       error        patient refused
value beyond the plausible limits (below) (**)             error        patient refused
an age below 0 or above 120 (an age column trained in      error        patient refused
years: ``AGE_COLUMNS``)
value outside the training range, within the limits (*)    warning      used as it is
categorical level not seen in training                     warning      treated as unknown
a modality the model uses is absent from the cohort        warning      all patients (run level)
... and it is the clinical one and the model has no other  error        all patients refused
a cohort modality of another kind than the model's         error        all patients refused
more than half of the model's columns absent from a table  error        patients with a row refused;
                                                                        modality not used
some of the model's columns absent from a table            warning      imputed / missing values
a patient's row has no value in any of the model's columns warning      modality not used for them
a patient without clinical data (the cohort has the table) warning      rests on the other inputs
... and the model has no other modality                    error        patient refused
a patient without any of the model's modalities            warning      the model's baseline risk
=========================================================  ===========  ==========================

(*) Clinical values one by one; a genomics profile when more than 20% of the model's features are
outside their training range (:data:`PROFILE_FRACTION`): a new patient's single features fall
outside a training range by chance (2/(n+1) of them on average with n training patients), and the
fold models select their own features, each seen on its fold's training patients only.

(**) Clinical values one by one; a genomics profile when more than 3 of the model's features, or
2% of them if more (:data:`FAR_FEATURES`, :data:`FAR_FRACTION`), are beyond their limits (a table
on another scale). Fewer such features only warn, and the patient is predicted with them:
expression tables have heavy tails (TCGA's z-scores of unlogged values reach hundreds of
SDs), so one gene far outside the training range is found in a few patients of every cohort, the
validation patients of the run's own folds included, whose C-index counts them.

Plausible limits: ``[min - 5 * range, max + 5 * range]`` of the training values
(:data:`PLAUSIBLE_RANGES`; ``range = max - min``, the training SD when that is 0): far enough
that no value of the training patients or a similar cohort is refused, close enough that a unit
mistake (age in days, raw instead of log expression) is. Runs saved before the training range was
recorded use ``mean +- 10 SD`` instead (:data:`FALLBACK_SDS`) and do not warn about the range.
Longitudinal modalities: each patient's measurement of each variable farthest from the training
range is checked like a clinical value (a variable not measured is normal, not an issue).
Text, imaging and feature-bag modalities are only checked for presence.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from multimodal.data.sources import AGE_COLUMNS, AGE_YEARS
from multimodal.encoders.clinical import ClinicalPreprocessor
from multimodal.registry import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from multimodal.models.run import TrainedModel

__all__ = [
    "FALLBACK_SDS",
    "FAR_FEATURES",
    "FAR_FRACTION",
    "ISSUE_COLUMNS",
    "MOST_COLUMNS",
    "PLAUSIBLE_RANGES",
    "PROFILE_FRACTION",
    "InputReport",
    "check_inputs",
    "status_summary",
]

#: Plausible limits: this many training ranges below the training minimum / above the maximum.
PLAUSIBLE_RANGES = 5.0
#: Plausible limits of runs saved without training ranges: training mean +- this many SDs.
FALLBACK_SDS = 10.0
#: A genomics profile warns when more than this share of the model's features are outside their
#: training range (single features fall outside by chance: 2/(n+1) of them with n training
#: patients); clinical values warn one by one.
PROFILE_FRACTION = 0.2
#: A genomics profile with at most this many features (or this share of the model's features,
#: whichever is larger) beyond their plausible limits warns; with more it is refused (another
#: scale). TCGA's expression z-scores put 1-3 of 1,000 features that far out in 3 of BLCA's 75
#: fold-0 validation patients.
FAR_FEATURES, FAR_FRACTION = 3, 0.02
#: A table lacking more than this fraction of the model's columns of its modality is not used.
MOST_COLUMNS = 0.5
#: Columns of :attr:`InputReport.issues`.
ISSUE_COLUMNS = ["patient_id", "modality", "column", "severity", "message"]
_SHOWN = 5  # columns / values named in one message


@dataclass
class InputReport:
    """Problems of a cohort's inputs for a model (see the module docstring for the rules).

    Attributes
    ----------
    issues : DataFrame with :data:`ISSUE_COLUMNS`; ``severity`` is ``"warning"`` or ``"error"``;
        ``patient_id`` is None for a problem of the whole cohort (a missing modality), which
        applies to every patient; ``column`` names the column(s), comma-separated, or None.
    patient_ids : the cohort's patients, in its order.
    unusable : modality -> patients whose data of that modality must not be used (columns
        missing, empty rows); a modality of every patient when the whole table is unusable.
    missing_columns : modality -> the model's columns its table lacks (filled as missing values).
    """

    issues: pd.DataFrame
    patient_ids: list[str]
    unusable: dict[str, set[str]] = field(default_factory=dict)
    missing_columns: dict[str, list[str]] = field(default_factory=dict)

    def errors(self) -> pd.DataFrame:
        """The rows of severity ``error`` (their patients are refused)."""
        return self.issues[self.issues["severity"] == "error"].reset_index(drop=True)

    def warnings(self) -> pd.DataFrame:
        """The rows of severity ``warning``."""
        return self.issues[self.issues["severity"] == "warning"].reset_index(drop=True)

    def for_patient(self, patient_id: str) -> pd.DataFrame:
        """The rows about ``patient_id``, the cohort-wide ones included (empty for an unknown id)."""
        if str(patient_id) not in set(self.patient_ids):
            return self.issues.iloc[:0]
        pid = self.issues["patient_id"]
        return self.issues[pid.isna() | (pid == str(patient_id))].reset_index(drop=True)

    def status(self) -> pd.Series:
        """Per patient (index patient_id): ``refused`` (an error), ``warning`` or ``ok``."""
        out = pd.Series("ok", index=pd.Index(self.patient_ids, name="patient_id"), dtype=object)
        for severity, label in (("warning", "warning"), ("error", "refused")):
            rows = self.issues[self.issues["severity"] == severity]
            if rows["patient_id"].isna().any():
                out[:] = label
            else:
                out[out.index.isin(rows["patient_id"])] = label
        return out

    def refused(self) -> list[str]:
        """Patients with an error, in cohort order."""
        status = self.status()
        return status.index[status == "refused"].tolist()

    def messages(self, separator: str = " | ") -> pd.Series:
        """Per patient (index patient_id): their messages, errors first ("" when none)."""
        ordered = self.issues.sort_values("severity", key=lambda s: s != "error", kind="stable")
        shared = ordered.loc[ordered["patient_id"].isna(), "message"].tolist()
        own = ordered.dropna(subset=["patient_id"]).groupby("patient_id", sort=False)["message"]
        by_patient = {pid: list(msgs) for pid, msgs in own}
        return pd.Series(
            [separator.join(by_patient.get(pid, []) + shared) for pid in self.patient_ids],
            index=pd.Index(self.patient_ids, name="patient_id"),
            dtype=object,
        )

    def summary(self) -> str:
        """``"60 patient(s): 57 ok, 2 warning, 1 refused"``."""
        return status_summary(self.status())

    def describe(self, limit: int = 5) -> str:
        """:meth:`summary`, then the cohort-wide messages and the first ``limit`` patients'."""
        lines = [self.summary()]
        ordered = self.issues.sort_values("severity", key=lambda s: s != "error", kind="stable")
        shared = ordered[ordered["patient_id"].isna()]
        lines += [f"  {r.severity}: {r.message}" for r in shared.itertuples()]
        own = ordered.dropna(subset=["patient_id"]).drop_duplicates("patient_id")
        lines += [f"  {r.severity}: {r.message}" for r in own.head(limit).itertuples()]
        if len(own) > limit:
            lines.append(f"  ... and {len(own) - limit} more patient(s) with issues")
        return "\n".join(lines)


def status_summary(status: pd.Series) -> str:
    """``"60 patient(s): 57 ok, 2 warning, 1 refused"`` from one status per patient (``ok``,
    ``warning`` or ``refused``, as :meth:`InputReport.status` and ``predict`` give them)."""
    counts = status.value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in ("ok", "warning", "refused")]
    return f"{len(status)} patient(s): " + ", ".join(parts)


# ---------------------------------------------------------------------------------- references
@dataclass
class _Numeric:
    """The model's numeric columns of one modality, with their training range and limits."""

    columns: list[str]
    low: np.ndarray  # training minimum (NaN: not recorded)
    high: np.ndarray
    lower: np.ndarray  # plausible limits
    upper: np.ndarray
    mean: np.ndarray
    sd: np.ndarray


@dataclass
class _Reference:
    """What the model knows of one modality (union over the fold models)."""

    name: str
    kind: str
    numeric: _Numeric | None = None
    levels: dict[str, list[str]] = field(default_factory=dict)  # categorical column -> levels
    imputed: str = "treated as missing values"
    range_fraction: float = 0.0  # share of the columns outside the training range that warns

    @property
    def columns(self) -> list[str]:
        return (self.numeric.columns if self.numeric else []) + list(self.levels)


def _numeric_reference(per_fold: list[tuple[Sequence[str], Any, Any, Any, Any]]) -> _Numeric:
    """Columns and statistics over the folds: ``(columns, min, max, mean, sd)`` per fold."""
    columns = list(dict.fromkeys(c for cols, *_ in per_fold for c in cols))
    pos = {c: i for i, c in enumerate(columns)}
    stats = np.full((len(per_fold), 4, len(columns)), np.nan)
    for f, (cols, *values) in enumerate(per_fold):
        idx = [pos[c] for c in cols]
        for s, v in enumerate(values):
            if v is not None:
                stats[f, s, idx] = [np.nan if x is None else float(x) for x in v]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: statistic unknown
        low, high = np.nanmin(stats[:, 0], axis=0), np.nanmax(stats[:, 1], axis=0)
        mean, sd = np.nanmean(stats[:, 2], axis=0), np.nanmax(stats[:, 3], axis=0)
        lo_sd = np.nanmin(stats[:, 2] - FALLBACK_SDS * stats[:, 3], axis=0)
        hi_sd = np.nanmax(stats[:, 2] + FALLBACK_SDS * stats[:, 3], axis=0)
    width = np.where(high - low > 0, high - low, np.nan_to_num(sd, nan=1.0))
    known = np.isfinite(low) & np.isfinite(high)
    lower = np.where(known, low - PLAUSIBLE_RANGES * width, lo_sd)
    upper = np.where(known, high + PLAUSIBLE_RANGES * width, hi_sd)
    return _Numeric(columns, low, high, lower, upper, mean, sd)


def _references(model: TrainedModel) -> dict[str, _Reference]:
    """modality -> :class:`_Reference`, from the fold models' fitted pipelines."""
    refs = {}
    for m in model.modalities:
        pipes = [fm.pipelines[m] for fm in model.folds if m in fm.pipelines]
        kind = getattr(pipes[0], "kind", "") if pipes else ""
        ref = _Reference(m, kind)
        preps = [getattr(p, "prep", None) for p in pipes]
        if kind == "clinical" and all(preps):
            ref.numeric = _numeric_reference(
                [(p.numeric, p.min_, p.max_, p.mean_, p.std_) for p in preps]
            )
            for p in preps:
                for c in p.categorical:
                    known = ref.levels.setdefault(c, [])
                    known += [lv for lv in p.levels_.get(c, []) if lv not in known]
        elif kind == "genomics" and all(preps):
            ranges = [(getattr(q, "min_", None), getattr(q, "max_", None)) for q in pipes]
            ref.numeric = _numeric_reference(
                [(p.feature_names_, *r, p.mean_, p.std_) for p, r in zip(preps, ranges)]
            )
            ref.imputed = "imputed with the training median"
            ref.range_fraction = PROFILE_FRACTION
        elif kind == "longitudinal" and all(hasattr(p, "low") for p in pipes):
            ref.numeric = _numeric_reference(
                [(p.variables, p.low, p.high, None, None) for p in pipes]
            )
        refs[m] = ref
    return refs


# ---------------------------------------------------------------------------------- collecting
class _Issues:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add(self, pid, modality, column, severity, message) -> None:
        self.rows.append((pid, modality, column, severity, message))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=ISSUE_COLUMNS).astype(object)


def _label(cohort: Any, m: str) -> str:
    """The modality's file as messages name it (relative to the manifest when there is one)."""
    source = cohort.sources[m]
    path = getattr(source, "path", None)
    manifest = getattr(cohort, "manifest", None)
    if path is None:
        return f"the {m} table"
    return manifest.relative(path) if manifest is not None else path.name


def _names(items: Iterable[Any], limit: int = _SHOWN) -> str:
    items = list(items)
    shown = ", ".join(repr(str(i)) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _g(v: float) -> str:
    return f"{v:.4g}"


def check_inputs(model: TrainedModel, cohort: Any) -> InputReport:
    """Check ``cohort``'s inputs against what ``model`` was trained on.

    Parameters
    ----------
    model : a :class:`~multimodal.models.run.TrainedModel` (``multimodal.load_run``).
    cohort : the patients to predict (``patients`` table + ``sources``; outcomes not needed).

    Returns
    -------
    InputReport -- see the module docstring for the rules, severities and plausible limits.
    """
    ids = [str(i) for i in cohort.patients.index]
    refs = _references(model)
    issues = _Issues()
    report = InputReport(issues.frame(), ids)
    sources = getattr(cohort, "sources", {})
    usable = {m: m in sources and sources[m].kind == ref.kind for m, ref in refs.items()}
    for m, ref in refs.items():
        if usable[m]:
            _check_modality(ref, cohort, ids, issues, report)
        else:
            _missing_modality(ref, refs, cohort, usable, issues)
    used = {
        m: set(map(str, sources[m].patient_ids)) - report.unusable.get(m, set())
        for m in refs
        if usable[m]
    }
    _check_presence(refs, used, cohort, ids, issues)
    report.issues = issues.frame()
    return report


def _missing_modality(
    ref: _Reference, refs: dict[str, _Reference], cohort: Any, usable: dict[str, bool], issues
) -> None:
    """A modality of the model that the cohort lacks, or has with another kind."""
    sources = getattr(cohort, "sources", {})
    m = ref.name
    others = [o for o in refs if o != m and usable[o]]
    if m in sources:
        issues.add(
            None,
            m,
            None,
            "error",
            f"the cohort's modality {m!r} is of kind {sources[m].kind}, but the model's {m!r} is "
            f"{ref.kind}: it cannot be used. Give the {ref.kind} table the name {m!r} in the "
            "manifest and rename the other modality.",
        )
        return
    spare = [s for s, src in sources.items() if src.kind == ref.kind and s not in refs]
    hint = (
        f" The cohort's modality {spare[0]!r} ({ref.kind}) is not used by the model: if it holds "
        f"the same data, name it {m!r} in the manifest."
        if spare
        else ""
    )
    if ref.kind == "clinical" and len(refs) == 1:
        issues.add(
            None,
            m,
            None,
            "error",
            f"the cohort has no modality {m!r} (clinical), and the model uses no other modality: "
            f"it cannot predict. Add the clinical table to the manifest as {m!r}.{hint}",
        )
        return
    rest = (
        f"predictions rest on {', '.join(others)} alone"
        if others
        else "no modality of the model is present: every prediction is the model's baseline risk"
    )
    issues.add(
        None,
        m,
        None,
        "warning",
        f"the cohort has no modality {m!r} ({ref.kind}), which the model uses: {rest}.{hint}",
    )


def _table_rows(cohort: Any, m: str, ids: list[str]) -> pd.DataFrame:
    """The modality's rows of the cohort's patients (one per patient, cohort order)."""
    table = cohort.sources[m].table
    if "patient_id" in table.columns:
        table = table.drop_duplicates("patient_id").set_index("patient_id")
    table = table[~table.index.duplicated()]
    table.index = table.index.astype(str)
    return table.loc[[i for i in ids if i in table.index]]


def _extreme_measurements(ref: _Reference, cohort: Any, ids: list[str]) -> pd.DataFrame:
    """Per patient and variable of a longitudinal modality: the measurement farthest from the
    middle of the training range (one row per patient, a column per variable)."""
    num = ref.numeric
    table = cohort.sources[ref.name].table
    table = table[table["patient_id"].isin(set(ids)) & table["variable"].isin(num.columns)]
    mid = pd.Series((num.low + num.high) / 2.0, index=num.columns)
    dist = (table["value"] - table["variable"].map(mid)).abs()
    pick = table.assign(_d=dist.fillna(np.inf)).sort_values("_d", kind="stable")
    pick = pick.drop_duplicates(["patient_id", "variable"], keep="last")
    wide = pick.pivot(index="patient_id", columns="variable", values="value")
    wide.index = wide.index.astype(str)
    return wide


def _check_modality(ref: _Reference, cohort: Any, ids: list[str], issues, report) -> None:
    """Columns, values and levels of one modality the cohort has."""
    if not ref.columns:  # text, imaging, feature bags: presence only
        return
    label = _label(cohort, ref.name)
    if ref.kind == "longitudinal":  # a variable not measured is normal; values are checked
        _check_values(ref, _extreme_measurements(ref, cohort, ids), label, issues)
        return
    rows = _table_rows(cohort, ref.name, ids)
    if not _check_columns(ref, rows, label, issues, report):
        return
    present = [c for c in ref.columns if c in rows.columns]
    empty = rows.index[rows[present].isna().all(axis=1).to_numpy()]
    for pid in empty:
        issues.add(
            pid,
            ref.name,
            None,
            "warning",
            f"{label} (patient {pid}): no value in any of the model's {len(ref.columns)} "
            f"{ref.name} columns; {ref.name} is treated as missing for this patient.",
        )
    report.unusable.setdefault(ref.name, set()).update(empty)
    if ref.numeric is not None:
        _check_values(ref, rows, label, issues)
    _check_levels(ref, rows, label, issues)


def _check_columns(ref: _Reference, rows: pd.DataFrame, label: str, issues, report) -> bool:
    """The model's columns the table lacks: most of them -> errors and the modality unusable
    (returns False); some -> warnings, filled as missing values."""
    m = ref.name
    absent = [c for c in ref.columns if c not in rows.columns]
    found = [str(c) for c in rows.columns]
    hint = did_you_mean(absent[0], found) if absent else ""
    if len(absent) > MOST_COLUMNS * len(ref.columns):
        text = (
            f"{len(absent)} of the model's {len(ref.columns)} {m} columns are missing from the "
            f"table ({_names(absent)}).{hint} Columns found: {_names(found) or 'none'}. {m} is "
            "not used for this patient: rename the columns to the names used in training."
        )
        severity = "error"
        report.unusable[m] = set(rows.index)
    elif absent:
        text = f"the model's column(s) {_names(absent)} are missing from the table; they are "
        text += f"{ref.imputed}.{hint}"
        severity = "warning"
        report.missing_columns[m] = absent
    for pid in rows.index if absent else ():
        issues.add(pid, m, ",".join(absent), severity, f"{label} (patient {pid}): {text}")
    return not absent or severity == "warning"


#: (rule, severity, message template) of the value checks, in the order they are reported
_VALUE_RULES = (
    (
        "nonfinite",
        "error",
        "{cells}: not a finite number; the model needs finite values. Correct the value, or "
        "leave the cell empty (a missing value).",
    ),
    (
        "impossible",
        "error",
        "{cells}: not an age in years (0 to 120); is the unit right (ages in days divided by "
        "365.25 give years)? Correct the value, or leave the cell empty (a missing value).",
    ),
    (
        "far",
        "error",
        "{cells}: far outside the training range ({limit}); is the unit right (e.g. days "
        "instead of years, raw instead of log values)? Correct the value, or leave the cell "
        "empty (a missing value).",
    ),
    (
        "far_feature",
        "warning",
        "{cells}: far outside the training range ({limit}){share}; the patient is predicted "
        "with it, so check the value, or leave the cell empty (a missing value).",
    ),
    ("beyond", "warning", "{cells}: outside the training range{share}; the model extrapolates."),
)


def _value_masks(num: _Numeric, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict]:
    """The model's numeric columns ``rows`` has (indices into ``num.columns``), their values
    (n, p) and one (n, p) mask per rule of :data:`_VALUE_RULES`."""
    keep = np.asarray([j for j, c in enumerate(num.columns) if c in rows.columns], dtype=int)
    cols = [num.columns[j] for j in keep]
    x = rows[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    # an age column trained in years (its training maximum at most 120) takes no other value
    age = np.asarray(
        [str(c).lower() in AGE_COLUMNS and num.high[j] <= AGE_YEARS[1] for c, j in zip(cols, keep)],
        dtype=bool,
    )
    with np.errstate(invalid="ignore"):
        impossible = finite & age & ((x < AGE_YEARS[0]) | (x > AGE_YEARS[1]))
        far = finite & ~impossible & ((x < num.lower[keep]) | (x > num.upper[keep]))
        beyond = finite & ~far & ~impossible & ((x < num.low[keep]) | (x > num.high[keep]))
    masks = {"nonfinite": np.isinf(x), "impossible": impossible, "far": far, "beyond": beyond}
    return keep, x, masks


def _check_values(ref: _Reference, rows: pd.DataFrame, label: str, issues) -> None:
    """Non-finite values and values beyond the plausible limits (errors), outside the training
    range (warnings); one row per patient and rule."""
    num = ref.numeric
    keep, x, masks = _value_masks(num, rows)
    if not len(keep):
        return
    beyond = masks["beyond"]  # a profile (genomics) warns when many features are outside
    beyond[beyond.sum(axis=1) <= ref.range_fraction * len(num.columns)] = False
    far = masks["far"]  # ... and is refused when more than a few are far outside (another
    few = max(FAR_FEATURES, FAR_FRACTION * len(num.columns))  # scale); heavy tails: warnings
    single = far & (far.sum(axis=1) <= few)[:, None] if ref.range_fraction else np.zeros_like(far)
    masks["far_feature"], masks["far"] = single, far & ~single
    for rule, severity, template in _VALUE_RULES:
        for i in np.flatnonzero(masks[rule].any(axis=1)):
            js = keep[np.flatnonzero(masks[rule][i])]
            values = x[i, np.flatnonzero(masks[rule][i])]
            pid = rows.index[i]
            text = _value_message(ref, js, values, template)
            columns = ",".join(num.columns[j] for j in js)
            issues.add(pid, ref.name, columns, severity, f"{label} (patient {pid}): {text}")


def _value_message(ref: _Reference, js: np.ndarray, values: np.ndarray, template: str) -> str:
    """``template`` filled for the flagged columns ``js`` (indices into the model's columns)."""
    num = ref.numeric
    known = np.isfinite(num.low[js]) & np.isfinite(num.high[js])
    cells = [
        f"{num.columns[j]!r} = {_g(v)} (training range {_g(num.low[j])} to {_g(num.high[j])})"
        if k
        else f"{num.columns[j]!r} = {_g(v)} (training mean {_g(num.mean[j])}, SD {_g(num.sd[j])})"
        for j, v, k in zip(js[:_SHOWN], values[:_SHOWN], known[:_SHOWN])
    ]
    more = f" and {len(js) - _SHOWN} more column(s)" if len(js) > _SHOWN else ""
    limit = (
        f"more than {PLAUSIBLE_RANGES:g} times its width beyond it"
        if known.all()
        else f"more than {FALLBACK_SDS:g} training SDs from the training mean"
    )
    share = f" ({len(js)} of the model's {len(num.columns)} features)" if ref.range_fraction else ""
    return template.format(cells=", ".join(cells) + more, limit=limit, share=share)


def _check_levels(ref: _Reference, rows: pd.DataFrame, label: str, issues) -> None:
    """Categorical levels not seen in training (warnings), one row per patient and column."""
    if not ref.levels:
        return
    prep = ClinicalPreprocessor(categorical=list(ref.levels))
    prep.levels_ = ref.levels
    for r in prep.unseen_levels(rows).itertuples():
        known = ", ".join(ref.levels[r.column][:10]) or "none"
        issues.add(
            r.patient_id,
            ref.name,
            r.column,
            "warning",
            f"{label} (patient {r.patient_id}): column {r.column!r} has level {r.level!r}, not "
            f"seen in training (levels: {known}); it is treated as unknown, like a missing "
            "value. Map it to a training level, or leave the cell empty.",
        )


def _check_presence(
    refs: dict[str, _Reference], used: dict[str, set[str]], cohort: Any, ids: list[str], issues
) -> None:
    """Patients without clinical data (the cohort has the table) or without any of the model's
    modalities."""
    clinical = next((m for m, r in refs.items() if r.kind == "clinical"), None)
    refused = {r[0] for r in issues.rows if r[3] == "error" and r[0] is not None}
    for pid in ids:
        if pid in refused:  # already refused: no second message about what remains
            continue
        have = [m for m in refs if pid in used.get(m, ())]
        if clinical is not None and clinical in used and clinical not in have:
            label = _label(cohort, clinical)
            if len(refs) == 1:
                issues.add(
                    pid,
                    clinical,
                    None,
                    "error",
                    f"{label}: no usable row for patient {pid}, and the model uses no other "
                    "modality: it cannot predict for this patient. Add the patient's row.",
                )
                continue
            rest = (
                f"predictions rest on {', '.join(have)} alone"
                if have
                else "the prediction is the model's baseline risk"
            )
            issues.add(
                pid, clinical, None, "warning", f"{label}: no usable row for patient {pid}: {rest}."
            )
        elif not have and used:  # (no modality in the cohort at all: said once, run-wide)
            issues.add(
                pid,
                None,
                None,
                "warning",
                f"patient {pid} has no data of any modality the model uses "
                f"({', '.join(refs)}): the prediction is the model's baseline risk.",
            )
