"""The cohort: a patient table with outcomes plus modality sources, joined by ``patient_id``.

Conventions (see :mod:`multimodal.types`): ``time`` float >= 0, ``event`` bool (True = event
observed), converted once here at the data boundary. A patient missing a modality is normal.
Row numbers in messages count the header as row 1 (the first patient is row 2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.data.longitudinal import LongitudinalSource, check_against_outcomes
from multimodal.data.manifest import Manifest, Problems, load_manifest, read_table
from multimodal.data.patients import check_censorship, check_time_unit, parse_patients
from multimodal.data.sources import (
    ClinicalSource,
    ModalitySource,
    build_source,
    check_covariate_values,
)
from multimodal.data.splits import (
    Fold,
    check_training_events,
    read_fold_files,
    stratified_folds,
)
from multimodal.data.tcga_tables import (
    CLINICAL_DEFAULTS,
    non_default_covariates,
    read_tcga_tables,
)
from multimodal.exceptions import ConfigError, DataError, MultimodalError
from multimodal.registry import did_you_mean

# parse_patients lives in multimodal.data.patients (below the TCGA reader); importable from here too
__all__ = [
    "ALL_MODALITIES",
    "Cohort",
    "load_tcga",
    "locate_cohort",
    "locate_run_cohort",
    "parse_patients",
]

log = logging.getLogger(__name__)

#: Name of the coverage row counting patients that have every modality.
ALL_MODALITIES = "all_modalities"

_MANIFEST_NAMES = ("cohort.yaml", "cohort.yml", "cohort.json", "manifest.yaml", "manifest.yml")


def locate_cohort(path: str | Path) -> tuple[str, Path]:
    """Tell what ``path`` is: ``("manifest", file)`` or ``("tcga", folder)``.

    A folder is a manifest cohort when it holds one of ``cohort.yaml``, ``cohort.yml``,
    ``cohort.json``, ``manifest.yaml``, ``manifest.yml``, else a TCGA folder when it holds
    ``clinical.csv``. A file named ``pbc2.csv`` is the Mayo PBC follow-up (``("pbc2", file)``,
    :func:`multimodal.data.pbc.read_pbc2`).
    """
    path = Path(path)
    if path.is_file():
        if path.name.lower() in ("pbc2.csv", "pbc2.csv.gz"):
            return "pbc2", path
        return "manifest", path
    if path.is_dir():
        for name in _MANIFEST_NAMES:
            if (path / name).is_file():
                return "manifest", path / name
        if (path / "clinical.csv").is_file():
            return "tcga", path
        raise DataError(
            f"{path} is a folder without a manifest ({', '.join(_MANIFEST_NAMES)}) "
            "and is not a TCGA folder (no clinical.csv)"
        )
    raise DataError(f"cohort {path} not found; give a manifest file or a TCGA folder")


def locate_run_cohort(
    run_dir: str | Path, config: dict[str, Any], recorded: str | Path | None = None
) -> Path | None:
    """Where a trained run's cohort is (:func:`locate_cohort` of the first that is one):
    ``data.cohort`` of the run's ``config`` (absolute, or relative to the working directory, the
    run folder or its parent), else the path ``train`` recorded (``_meta.cohort_path``), else a
    ``cohort/`` folder beside or inside the run (the demo layout ``runs/demo/{cohort,fusion}``);
    None when none is."""
    run_dir = Path(run_dir)
    candidates: list[Path] = []
    configured = (config.get("data") or {}).get("cohort")
    if configured:
        p = Path(str(configured))
        candidates += [p] if p.is_absolute() else [p, run_dir / p, run_dir.parent / p]
    if recorded:
        candidates.append(Path(str(recorded)))
    candidates += [run_dir.parent / "cohort", run_dir / "cohort"]
    for c in candidates:
        try:
            return locate_cohort(c)[1]
        except MultimodalError:
            continue
    return None


def _load_from_manifest(
    path: Path, problems: Problems, require_outcomes: bool = True
) -> Cohort | None:
    """Build a cohort from a manifest, adding every problem to ``problems``."""
    manifest = load_manifest(path, problems)
    patients = None
    ppath = manifest.patients["path"]
    plabel = manifest.relative(ppath)
    try:
        table = read_table(ppath, plabel)
        patients = parse_patients(table, plabel, problems, require_outcomes=require_outcomes)
        check_censorship(table, plabel, problems)
        if patients is not None and "time" in patients:
            check_time_unit(patients["time"], manifest.time_unit, plabel, problems)
    except MultimodalError as exc:
        problems.error(type(exc), str(exc))
    known = patients.index if patients is not None else None
    # image / bag paths stay inside the cohort folder unless the manifest allows others
    root = None if manifest.allow_external_paths else manifest.root
    sources: dict[str, ModalitySource] = {}
    for name, spec in manifest.modalities.items():
        label = manifest.relative(spec["path"])
        try:
            frame = read_table(spec["path"], label)
        except MultimodalError as exc:
            problems.error(type(exc), str(exc))
            continue
        source = build_source(
            name, frame, spec, label, problems, known, spec["path"].parent, root=root
        )
        if isinstance(source, LongitudinalSource) and patients is not None:
            source = check_against_outcomes(source, patients, manifest.time_unit, problems, label)
        if source is not None:
            sources[name] = source
    if patients is None:
        return None
    sources = _drop_empty_sources(sources, len(patients), problems)
    return Cohort(
        patients,
        sources,
        name=manifest.name,
        root=manifest.root,
        folds_dir=manifest.folds_dir,
        manifest=manifest,
    )


def check_training_covariates(cohort: Cohort, problems: Problems | None = None) -> None:
    """The covariate values a training cohort should not hold
    (:func:`~multimodal.data.sources.check_covariate_values`), over its patients' clinical
    rows. Run by ``multimodal train`` and ``multimodal validate``, not by the loaders: patients
    to predict are checked against the model instead. With ``problems`` None, errors raise."""
    own = problems is None
    problems = Problems() if problems is None else problems
    for name, source in cohort.sources.items():
        if isinstance(source, ClinicalSource):
            path, manifest = source.path, cohort.manifest
            label = (
                f"the {name} table"
                if path is None
                else (manifest.relative(path) if manifest is not None else path.name)
            )
            check_covariate_values(source, label, problems, cohort.patients.index)
    if own:
        problems.raise_if_any()


def _drop_empty_sources(
    sources: dict[str, ModalitySource], n_patients: int, problems: Problems
) -> dict[str, ModalitySource]:
    """The sources that have patients; each one without is left out with a warning (a model
    must not silently train a branch that never sees data)."""
    kept = {}
    for name, source in sources.items():
        if len(source.patient_ids):
            kept[name] = source
            continue
        label = source.path.name if source.path is not None else "its table"
        problems.warn(
            f"{label} (modality {name!r}): no patient of the cohort has this modality (0 of "
            f"{n_patients} patients); it is left out. Check that its patient_id values match the "
            "patient table, or remove the modality from the manifest"
        )
    return kept


def _restrict_to_split(cohort: Cohort, folder: Path, splits_name: str) -> Cohort:
    split_dir = cohort._resolve_split(splits_name)
    ids: set[str] = set()
    for path in sorted(split_dir.glob("fold_*.csv")):
        ids |= set(read_table(path, f"{split_dir.name}/{path.name}")["patient_id"].astype(str))
    unknown = sorted(ids - set(cohort.patients.index))
    if unknown:
        raise DataError(
            f"{split_dir}: {len(unknown)} patient(s) of the fold files are not in {folder.name}/clinical.csv "
            f"(e.g. {', '.join(unknown[:5])})"
        )
    sub = cohort.subset([i for i in cohort.patients.index if i in ids])
    sub.folds_dir = split_dir
    return sub


def load_tcga(
    folder: str | Path,
    splits_name: str | None = None,
    clinical_numeric: Iterable[str] = ("age",),
    clinical_categorical: Iterable[str] = ("sex", "stage"),
    problems: Problems | None = None,
) -> Cohort | None:
    """Load a TCGA cancer folder; see :mod:`multimodal.data.tcga_tables` for the column mapping.

    Also importable from :mod:`multimodal.data.tcga`.

    Parameters
    ----------
    folder : e.g. ``shared/data/tcga/blca``.
    splits_name : optional fold set under ``splits/``; restricts the cohort to its patients and
        becomes the default of :meth:`Cohort.folds`.
    clinical_numeric, clinical_categorical : clinical.csv covariate columns.
    problems : collector; when None, errors raise at the end.

    Returns
    -------
    Cohort, or None (with errors in ``problems``) when the patient table cannot be built.
    """
    own = problems is None
    problems = Problems() if problems is None else problems
    # lists first: the reader consumes them, and the cohort records them (a generator once only)
    chosen = {
        "clinical_numeric": [str(c) for c in clinical_numeric],
        "clinical_categorical": [str(c) for c in clinical_categorical],
    }
    tables = read_tcga_tables(
        folder, chosen["clinical_numeric"], chosen["clinical_categorical"], problems
    )
    if own:
        problems.raise_if_any()
    if tables.patients is None:
        return None
    cohort = Cohort(
        tables.patients,
        tables.sources,
        name=tables.name,
        root=tables.root,
        time_unit="months",
        clinical_options=non_default_covariates(chosen),
    )
    if splits_name is not None:
        cohort = _restrict_to_split(cohort, tables.root, splits_name)
    cohort.sources = _drop_empty_sources(cohort.sources, len(cohort), problems)
    return cohort


class Cohort:
    """Patients with outcomes and their modality sources.

    Parameters
    ----------
    patients : DataFrame indexed by patient_id (str) with ``time`` (float) and ``event`` (bool).
    sources : modality name -> :class:`~multimodal.data.sources.ModalitySource`.
    name : cohort name.
    root : folder that fold names resolve against (manifest folder or TCGA folder).
    folds_dir : default fold-file folder (manifest ``splits.folds_dir`` or TCGA ``splits_name``).
    known_ids : every patient id the cohort was loaded with (kept through :meth:`subset` so that
        fold files may name excluded patients).
    clinical_options : the clinical covariates a TCGA folder was read with
        (:meth:`~multimodal.config.DataConfig.cohort_options`), where not its defaults; None for
        other cohorts.

    Examples
    --------
    >>> cohort = Cohort.load("cohort.yaml")                     # doctest: +SKIP
    >>> cohort.coverage()                                       # doctest: +SKIP
    >>> for fold in cohort.folds(k=5, seed=0): ...              # doctest: +SKIP
    """

    def __init__(
        self,
        patients: pd.DataFrame,
        sources: dict[str, ModalitySource] | None = None,
        name: str = "cohort",
        root: Path | None = None,
        folds_dir: Path | None = None,
        known_ids: Iterable[str] | None = None,
        manifest: Manifest | None = None,
        time_unit: str | None = None,
        clinical_options: dict[str, list[str]] | None = None,
    ) -> None:
        self.patients = patients
        #: The ``data.clinical_*`` keys a TCGA folder was read with, where they differ from its
        #: defaults (``{}``: age, sex and stage); a run trained on the cohort records them. None:
        #: not a TCGA folder (a manifest or PBC2 cohort names its own covariates).
        self.clinical_options = None if clinical_options is None else dict(clinical_options)
        self.sources = dict(sources or {})
        self.name = name
        self.root = Path(root) if root is not None else None
        self.folds_dir = Path(folds_dir) if folds_dir is not None else None
        self.known_ids = pd.Index(list(known_ids) if known_ids is not None else patients.index)
        self.manifest = manifest
        self._time_unit = time_unit

    @property
    def time_unit(self) -> str | None:
        """The unit of ``time``: the manifest's ``patients.time_unit``, else what the loader knew
        (``years`` for the PBC file), else None (not stated)."""
        unit = getattr(self.manifest, "time_unit", None) if self.manifest is not None else None
        return unit or self._time_unit

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_manifest(cls, path: str | Path, require_outcomes: bool = True) -> Cohort:
        """Load a cohort manifest (YAML/JSON, ``data_schemas/cohort_manifest.schema.json``).

        ``require_outcomes=False``: patients to predict, whose table may lack ``time``/``event``
        or leave them empty (see :func:`~multimodal.data.patients.parse_patients`).

        Raises
        ------
        SchemaError, DataError, LeakageError
            With every problem found, one per line (:func:`multimodal.data.validate` returns
            them as a report instead).
        """
        problems = Problems()
        cohort = _load_from_manifest(Path(path), problems, require_outcomes)
        problems.raise_if_any()
        if cohort is None:  # pragma: no cover - a missing patient table is always an error
            raise DataError(f"{path}: no patient table")
        return cohort

    @classmethod
    def from_tcga(
        cls,
        folder: str | Path,
        splits_name: str | None = None,
        clinical_numeric: Iterable[str] = ("age",),
        clinical_categorical: Iterable[str] = ("sex", "stage"),
    ) -> Cohort:
        """Load a TCGA cancer folder (``shared/data/tcga/<cancer>/``); see :mod:`multimodal.data.tcga`.

        Parameters
        ----------
        folder : the cancer's folder (clinical.csv, genomics.csv.gz, reports*.csv, splits/).
        splits_name : fold set under ``splits/`` (e.g. ``"survpath_5fold"``): restricts the cohort
            to its patients and makes it the default of :meth:`folds`.
        clinical_numeric, clinical_categorical : clinical.csv columns used as covariates
            (outcome columns are refused with :class:`LeakageError`).
        """
        problems = Problems()
        cohort = load_tcga(folder, splits_name, clinical_numeric, clinical_categorical, problems)
        problems.raise_if_any()
        return cohort

    @classmethod
    def from_pbc2(cls, path: str | Path) -> Cohort:
        """The Mayo PBC follow-up (``longitudinal/pbc2.csv``): patients, ``clinical`` and the
        longitudinal ``labs`` (see :mod:`multimodal.data.pbc`)."""
        from multimodal.data.pbc import read_pbc2

        patients, sources = read_pbc2(path)
        # root: the file itself, so that a run records where its cohort is (``_meta.cohort_path``)
        return cls(patients, sources, name="pbc2", root=Path(path), time_unit="years")

    @classmethod
    def load(
        cls,
        path: str | Path,
        require_outcomes: bool = True,
        clinical_numeric: Iterable[str] | None = None,
        clinical_categorical: Iterable[str] | None = None,
    ) -> Cohort:
        """Load a manifest file, a folder holding ``cohort.yaml`` (or ``.yml``/``.json``), or a
        TCGA cancer folder (``clinical.csv`` with ``survival_months``, no manifest).

        ``require_outcomes=False`` (prediction): a manifest's patient table may lack ``time`` /
        ``event`` or leave them empty; training needs them (the default).
        ``clinical_numeric`` / ``clinical_categorical`` (a config's ``data.clinical_numeric`` /
        ``data.clinical_categorical``, :meth:`~multimodal.config.DataConfig.cohort_options`):
        the clinical.csv covariates of a TCGA folder; None: ``age`` / ``sex, stage``. A manifest
        names its covariates itself, and giving either with one raises :class:`ConfigError`."""
        kind, target = locate_cohort(path)
        if kind == "tcga":
            given = {
                "clinical_numeric": clinical_numeric,
                "clinical_categorical": clinical_categorical,
            }
            defaulted = {k: CLINICAL_DEFAULTS[k] if v is None else v for k, v in given.items()}
            return cls.from_tcga(target, **defaulted)
        if clinical_numeric is not None or clinical_categorical is not None:
            where = (
                "its manifest's clinical entry (numeric: [...], categorical: [...])"
                if kind == "manifest"
                else "the package (multimodal.data.pbc)"
            )
            raise ConfigError(
                f"data.clinical_numeric / data.clinical_categorical choose the covariates of a "
                f"TCGA folder; {path} is a {kind} cohort, whose clinical covariates are set by "
                f"{where}. Remove the two keys from the config."
            )
        if kind == "pbc2":
            return cls.from_pbc2(target)
        return cls.from_manifest(target, require_outcomes)

    @classmethod
    def load_for_run(cls, path: str | Path, config: Any, require_outcomes: bool = True) -> Cohort:
        """Load ``path`` as a trained run reads it: a TCGA folder with the run's clinical
        covariates (``data.clinical_*`` of ``config``, a :class:`~multimodal.config.Config` or
        the run folder's config dict); a manifest cohort as it is (it names its own covariates,
        and the model's input checks flag a column it lacks). For ``predict``, ``explain``, the
        report, the robustness checks and the dashboard: new patients may come in either form."""
        from collections.abc import Mapping

        from pydantic import BaseModel

        from multimodal.config import cohort_options_of

        kind, _ = locate_cohort(path)
        if kind != "tcga":
            return cls.load(path, require_outcomes)
        if config is None:
            raw: Mapping[str, Any] = {}
        elif isinstance(config, BaseModel):  # a Config
            raw = config.model_dump(mode="json")
        elif isinstance(config, Mapping):  # a run folder's config.yaml
            raw = config
        else:
            raise TypeError(f"config: a Config or a dict, not {type(config).__name__}")
        if "data" not in raw and ("clinical_numeric" in raw or "clinical_categorical" in raw):
            raw = {"data": raw}  # a DataConfig
        return cls.load(path, require_outcomes, **cohort_options_of(raw))

    # ----------------------------------------------------------------------------- views
    @property
    def modalities(self) -> list[str]:
        """Modality names, in manifest order."""
        return list(self.sources)

    def __len__(self) -> int:
        return len(self.patients)

    def __repr__(self) -> str:
        return (
            f"Cohort(name={self.name!r}, patients={len(self)}, "
            f"events={int(self.patients['event'].sum())}, modalities={self.modalities})"
        )

    def availability(self) -> pd.DataFrame:
        """Bool DataFrame (n_patients, n_modalities): True = the patient has the modality."""
        index = self.patients.index
        data = {m: index.isin(s.patient_ids) for m, s in self.sources.items()}
        return pd.DataFrame(data, index=index, columns=self.modalities, dtype=bool)

    def coverage(self) -> pd.DataFrame:
        """Per-modality coverage.

        Returns
        -------
        DataFrame indexed by modality, plus a last row ``"all_modalities"`` (patients having every
        modality), with columns ``kind``, ``n_patients``, ``fraction`` (of the cohort) and
        ``n_events`` (events among those patients); with a longitudinal modality also
        ``measurements`` (median, min-max per patient that has it; empty for other kinds).
        """
        avail = self.availability()
        event = self.patients["event"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        n = max(len(self.patients), 1)
        rows = []
        columns = {m: (s.kind, avail[m].to_numpy()) for m, s in self.sources.items()}
        columns[ALL_MODALITIES] = ("", avail.all(axis=1).to_numpy())
        for m, (kind, has) in columns.items():
            rows.append(
                {
                    "modality": m,
                    "kind": kind,
                    "n_patients": int(has.sum()),
                    "fraction": float(has.sum() / n),
                    "n_events": int((has & event).sum()),
                }
            )
        table = pd.DataFrame(rows).set_index("modality")
        counts = {
            m: s.measurements_per_patient()
            for m, s in self.sources.items()
            if isinstance(s, LongitudinalSource)
        }
        if counts:
            table["measurements"] = [
                f"{c.median():g} ({c.min()}-{c.max()})"
                if m in counts and len(c := counts[m])
                else ""
                for m in table.index
            ]
        return table

    # ----------------------------------------------------------------------------- selection
    def subset(self, ids: Iterable[str]) -> Cohort:
        """A cohort of the given patients (cohort order kept); unknown ids raise DataError."""
        wanted = pd.Index([str(i) for i in ids]).unique()
        unknown = wanted[~wanted.isin(self.patients.index)]
        if len(unknown):
            raise DataError(
                f"subset: {len(unknown)} id(s) are not cohort patients (e.g. {', '.join(unknown[:5])})"
            )
        keep = self.patients.index.isin(wanted)
        patients = self.patients[keep]
        sources = {m: s.subset(patients.index) for m, s in self.sources.items()}
        return Cohort(
            patients,
            sources,
            self.name,
            self.root,
            self.folds_dir,
            self.known_ids,
            self.manifest,
            self._time_unit,
            self.clinical_options,
        )

    def filter(self, fn: Callable[[pd.DataFrame], Any]) -> Cohort:
        """Keep the patients for which ``fn(patients)`` is True.

        ``fn`` receives the whole patient table and returns a boolean mask of length
        n_patients (vectorised), e.g. ``cohort.filter(lambda p: p["site"] != "B")``.
        """
        mask = np.asarray(fn(self.patients))
        if mask.dtype != bool or mask.shape != (len(self.patients),):
            raise TypeError(
                f"filter: fn must return a boolean mask of shape ({len(self.patients)},), "
                f"got dtype {mask.dtype} shape {mask.shape}"
            )
        return self.subset(self.patients.index[mask])

    # ----------------------------------------------------------------------------- folds
    def _resolve_split(self, name: str) -> Path:
        bases = [b for b in (self.folds_dir, self.root) if b is not None]
        candidates = []
        for base in bases:
            candidates += [base / name, base / "splits" / name, base.parent / name]
        for c in candidates:
            if c.is_dir():
                return c
        available = sorted(
            p.name
            for base in bases
            for d in (base, base / "splits")
            if d.is_dir()
            for p in d.iterdir()
            if p.is_dir()
        )
        raise DataError(
            f"split {name!r} not found (looked in {', '.join(map(str, candidates)) or 'nowhere'})."
            f"{did_you_mean(name, available)} Available: {', '.join(available) or 'none'}"
        )

    def folds(
        self,
        k: int | None = None,
        seed: int = 0,
        group_by: str | None = None,
        *,
        split_dir: str | Path | None = None,
        name: str | None = None,
    ) -> list[Fold]:
        """Cross-validation folds.

        Parameters
        ----------
        k : number of stratified folds (default 5). When neither ``k``, ``split_dir`` nor ``name``
            is given and the cohort has default fold files (manifest ``splits.folds_dir`` or
            ``from_tcga(splits_name=...)``), those are used.
        seed : shuffling seed of the stratified split.
        group_by : patient-table column (e.g. ``"site"``) whose groups stay in one val fold.
        split_dir : folder of ``fold_<k>.csv`` files (patient_id, split in {train, val}).
        name : fold set name, looked up under the cohort's ``splits/`` folder
            (e.g. ``"porpoise_mcat_5fold"``).

        Returns
        -------
        list[Fold] -- ``Fold(index, train_ids, val_ids)``; train and val never overlap
        (:class:`LeakageError` otherwise).

        Raises
        ------
        DataError
            Also when a fold's training patients have no event (a cohort with a single event):
            refused here, before any training (:func:`~multimodal.data.splits.check_training_events`).
        """
        if split_dir is not None and name is not None:
            raise ValueError("give split_dir or name, not both")
        if name is not None:
            split_dir = self._resolve_split(name)
        if split_dir is None and k is None and self.folds_dir is not None:
            split_dir = self.folds_dir
        if split_dir is not None:
            folds = read_fold_files(split_dir, self.patients.index, self.known_ids)
        else:
            folds = stratified_folds(self.patients, 5 if k is None else k, seed, group_by)
        check_training_events(folds, self.patients, self.patients_label)
        return folds

    @property
    def patients_label(self) -> str:
        """The patient table as messages name it (``patients.csv``, ``blca/clinical.csv``)."""
        if self.manifest is not None and self.manifest.patients.get("path") is not None:
            return self.manifest.relative(self.manifest.patients["path"])
        if self.root is not None and (self.root / "clinical.csv").is_file():
            return f"{self.root.name}/clinical.csv"
        return "the patient table"
