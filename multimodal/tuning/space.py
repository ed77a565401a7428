"""The tuning file: a base config, a search space over dotted config keys, and study settings.

A tuning file is YAML (``configs/tune/*.yaml``)::

    base: ../demo.yaml              # a config file (relative to this file) or an inline mapping
    overrides:                      # fixed for every trial and kept in best.yaml
      train.epochs: 60
    search:                         # dotted config key -> distribution
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      fusion.dim: {type: int, low: 16, high: 64, step: 16}
      fusion.name: {type: categorical, choices: [concat, attention_gated]}
      data.modalities: {type: categorical, choices: [[clinical], [clinical, genomics]]}
    objective: {metrics: [c_index], inner_folds: 3}
    pruner: {name: median}          # median | hyperband | none
    sampler: {name: tpe, seed: 0}   # tpe | random
    study: {name: demo, n_trials: 40}

Every key of ``search`` and ``overrides`` is checked against :class:`multimodal.config.Config`
(unknown keys get a "did you mean"), and every distribution's extreme values are validated as a
whole config before a study starts, so a typo fails in a second rather than after the first trial.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from multimodal.config import (
    MOVED_KEYS,
    Config,
    EncoderConfig,
    load_config,
    read_yaml_mapping,
)
from multimodal.exceptions import ConfigError
from multimodal.registry import did_you_mean

__all__ = [
    "METRIC_DIRECTIONS",
    "ObjectiveSpec",
    "ParamSpec",
    "PrunerSpec",
    "SamplerSpec",
    "StudySpec",
    "TuneSpec",
    "check_config_path",
    "load_tune_spec",
    "set_dotted",
]

#: Metrics of ``metrics.json`` a study can optimise, and which way is better.
METRIC_DIRECTIONS: dict[str, Literal["maximize", "minimize"]] = {
    "c_index": "maximize",
    "uno_c": "maximize",
    "td_auc": "maximize",
    "ibs": "minimize",
}

#: Keys the tuner sets itself, and those that change how the cohort is read (a study reads it
#: once: ``data.clinical_*`` belong in the base config).
_RESERVED = (
    "data.folds",
    "data.split",
    "data.fold_indices",
    "data.cohort",
    "data.clinical_numeric",
    "data.clinical_categorical",
    "train.resume",
    "out",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    """One dimension of the search space (an Optuna distribution)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical parameter takes only 'choices'")
            labels = [choice_label(c) for c in self.choices]
            if len(set(labels)) != len(labels):
                raise ValueError(f"choices must be distinct (got {self.choices})")
            return self
        if self.choices is not None:
            raise ValueError(f"'choices' is for categorical parameters, not {self.type}")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"'low' must be smaller than 'high' (got {self.low} and {self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log=true needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("'step' and log=true cannot be combined (Optuna refuses it)")
        if self.type == "int" and not all(
            float(v).is_integer() for v in (self.low, self.high, self.step or 1)
        ):
            raise ValueError("an int parameter needs integer 'low', 'high' and 'step'")
        return self

    def extremes(self) -> list[Any]:
        """Values that bound the space (used to validate the config before a study starts)."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.type == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [float(self.low), float(self.high)]  # type: ignore[arg-type]

    def labels(self) -> list[Any]:
        """Optuna categorical choices: scalars as they are, lists as readable strings."""
        return [choice_label(c) for c in self.choices or []]

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this parameter for ``trial`` (an ``optuna.Trial``); returns the config value."""
        if self.type == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        label = trial.suggest_categorical(name, self.labels())
        return self.decode(label)

    def decode(self, label: Any) -> Any:
        """The config value of an Optuna parameter value (categorical labels -> choices)."""
        if self.type != "categorical":
            return label
        for choice in self.choices or []:
            if choice_label(choice) == label:
                return copy.deepcopy(choice)
        raise ConfigError(f"{label!r} is not one of the choices {self.choices}")


def choice_label(choice: Any) -> Any:
    """Optuna stores only None/bool/int/float/str choices; a list becomes ``"a+b"``."""
    if choice is None or isinstance(choice, (bool, int, float, str)):
        return choice
    if isinstance(choice, list) and all(isinstance(c, str) for c in choice):
        return "+".join(choice)
    return json.dumps(choice, sort_keys=True, separators=(",", ":"))


class ObjectiveSpec(_Strict):
    metrics: list[str] = Field(default_factory=lambda: ["c_index"], min_length=1, max_length=3)
    """Validation metrics (mean over the inner folds); several make a multi-objective study."""
    inner_folds: int = Field(3, ge=2)
    """Folds of the inner cross-validation, drawn from the training patients only."""

    @model_validator(mode="after")
    def _known_metrics(self) -> ObjectiveSpec:
        for m in self.metrics:
            if m not in METRIC_DIRECTIONS:
                raise ValueError(
                    f"unknown metric {m!r}.{did_you_mean(m, METRIC_DIRECTIONS)} "
                    f"Available: {', '.join(METRIC_DIRECTIONS)}"
                )
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics are repeated: {self.metrics}")
        return self

    @property
    def directions(self) -> list[str]:
        return [METRIC_DIRECTIONS[m] for m in self.metrics]


class PrunerSpec(_Strict):
    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0)
    """median: trials that are never pruned, to build the reference."""
    n_warmup_steps: int = Field(5, ge=0)
    """median: first epochs of each inner fold that are not reported, hence never pruned (the
    hold-out C-index of the first epochs is mostly noise)."""
    min_resource: int = Field(5, ge=1)
    """hyperband: epochs every trial gets before its first comparison."""
    reduction_factor: int = Field(3, ge=2)
    """hyperband: share of trials kept at each rung is 1 / reduction_factor."""


class SamplerSpec(_Strict):
    name: Literal["tpe", "random"] = "tpe"
    seed: int | None = 0
    n_startup_trials: int = Field(10, ge=0)
    """tpe: random trials before the model-based search starts."""


class StudySpec(_Strict):
    name: str | None = None
    """Default study name (``--study-name`` wins); default: the tuning file's stem."""
    n_trials: int | None = Field(None, ge=1)
    """Default ``--n-trials``."""
    heartbeat_interval: int = Field(30, ge=1)
    """Seconds between a running trial's heartbeats in the storage."""
    grace_period: int | None = Field(None, ge=1)
    """A running trial without a heartbeat for this long is failed and retried (default 2x the
    heartbeat interval)."""
    max_retry: int = Field(2, ge=0)
    """How often a trial whose worker died is re-run with the same parameters."""
    keep_models: bool = False
    """Keep each trial's ``model/`` folder (checkpoints are always deleted when a trial ends)."""


class _TuneFile(_Strict):
    base: str | dict[str, Any] | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, ParamSpec]
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    study: StudySpec = Field(default_factory=StudySpec)


_SECTIONS: dict[str, type[BaseModel]] = {
    "": _TuneFile,
    "objective": ObjectiveSpec,
    "pruner": PrunerSpec,
    "sampler": SamplerSpec,
    "study": StudySpec,
}


def set_dotted(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw["a"]["b"]["c"] = value`` for ``path = "a.b.c"``, creating sections."""
    parts = path.split(".")
    node = raw
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise ConfigError(f"{path}: {p!r} holds a value, not a section")
        node = node[p]
    node[parts[-1]] = copy.deepcopy(value)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``EncoderConfig | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _is_free_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def check_config_path(path: str) -> None:
    """Raise :class:`ConfigError` unless ``path`` (``"train.lr"``) names a key of :class:`Config`.

    ``encoders.<modality>.<key>`` accepts any modality name; keys under an ``options`` mapping are
    free (they are checked when the encoder, fusion or head is built).
    """
    parts = path.split(".")
    if not all(parts):
        raise ConfigError(f"{path!r} is not a dotted config key (e.g. train.lr)")
    model: type[BaseModel] = Config
    i = 0
    while i < len(parts):
        part, here = parts[i], ".".join(parts[: i + 1])
        field = model.model_fields.get(part)
        if field is None:
            moved = MOVED_KEYS.get(tuple(parts[i - 1 : i + 1])) if i == 1 else None
            if moved:
                raise ConfigError(f"{here}: this key moved to {'.'.join(moved)}")
            raise ConfigError(
                f"{here}: unknown config key.{did_you_mean(part, model.model_fields)} "
                f"Keys here: {', '.join(model.model_fields)}"
            )
        if model is Config and part == "encoders":
            if i + 1 >= len(parts):
                raise ConfigError(
                    "encoders: give a modality and a key, e.g. encoders.genomics.name"
                )
            model, i = EncoderConfig, i + 2  # skip the modality name
            if i >= len(parts):
                return  # a whole encoder block as the value
            continue
        sub = _model_in(field.annotation)
        last = i == len(parts) - 1
        if sub is not None and not last:
            model, i = sub, i + 1
            continue
        if _is_free_mapping(field.annotation) or last:
            return
        raise ConfigError(f"{here} holds a value, not a section: {path!r} goes too deep")


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid tuning file {source}:"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        where = ".".join(loc)
        if e["type"] == "extra_forbidden":
            section = _SECTIONS.get(loc[0] if len(loc) == 2 else "")
            if len(loc) == 3 and loc[0] == "search":
                section = ParamSpec
            hint = did_you_mean(loc[-1], section.model_fields) if section else ""
            lines.append(f"  {where}: unknown key.{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {where}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


class TuneSpec:
    """A validated tuning file: how to build each trial's config and the final best.yaml.

    Parameters
    ----------
    base : raw base config (a dict, as in a config YAML), with the tuning file's ``overrides``
        and any command-line ``--set`` already applied.
    search : dotted config key -> :class:`ParamSpec`.
    objective, pruner, sampler, study : the other sections of the tuning file.
    source : where it came from, for messages.
    """

    def __init__(
        self,
        base: dict[str, Any],
        search: dict[str, ParamSpec],
        objective: ObjectiveSpec | None = None,
        pruner: PrunerSpec | None = None,
        sampler: SamplerSpec | None = None,
        study: StudySpec | None = None,
        source: str = "tuning spec",
    ) -> None:
        self.base = copy.deepcopy(base)
        self.search = dict(search)
        self.objective = objective or ObjectiveSpec()
        self.pruner = pruner or PrunerSpec()
        self.sampler = sampler or SamplerSpec()
        self.study = study or StudySpec()
        self.source = source
        self._validate()

    # -- building configs ------------------------------------------------------------------

    def config_with(self, params: dict[str, Any]) -> dict[str, Any]:
        """Raw config: base with ``params`` (dotted key -> config value) applied."""
        raw = copy.deepcopy(self.base)
        for path, value in params.items():
            set_dotted(raw, path, value)
        return raw

    def trial_config(self, params: dict[str, Any], *, resume: bool = True) -> Config:
        """The config one trial trains: inner K-fold CV, no bootstrap, no progress bars."""
        raw = self.config_with(params)
        for path, value in (
            ("data.folds", self.objective.inner_folds),
            ("data.split", None),
            ("data.fold_indices", None),
            ("data.cohort", None),
            ("train.progress", False),
            ("train.resume", resume),
            ("eval.bootstrap", 0),
            ("out", None),
        ):
            set_dotted(raw, path, value)
        return load_config(raw)

    def decode(self, optuna_params: dict[str, Any]) -> dict[str, Any]:
        """Config values of a trial's Optuna parameters (categorical labels -> choices)."""
        return {k: self.search[k].decode(v) for k, v in optuna_params.items() if k in self.search}

    def max_epochs(self) -> int:
        """The most epochs one fold of a trial can train (the stride of pruning steps)."""
        epochs = int(load_config(self.base).train.epochs)
        p = self.search.get("train.epochs")
        return max(epochs, int(p.high)) if p is not None and p.type == "int" else epochs

    def fingerprint(self) -> str:
        """Hash of everything that makes two studies comparable (not n_trials, pruner, sampler)."""
        base = load_config(self.base).to_dict()
        base["data"].pop("cohort", None)
        base["train"].pop("progress", None)
        base.pop("out", None)
        payload = {
            "base": base,
            "search": {k: v.model_dump() for k, v in sorted(self.search.items())},
            "objective": self.objective.model_dump(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    # -- validation ------------------------------------------------------------------------

    def _validate(self) -> None:
        try:
            load_config(self.base)
        except ConfigError as exc:
            raise ConfigError(f"{self.source}: the base config is invalid: {exc}") from None
        if not self.search:
            raise ConfigError(f"{self.source}: 'search' is empty; give at least one parameter")
        for path, param in self.search.items():
            where = f"{self.source}: search.{path}"
            if path in _RESERVED:
                if path.startswith("data.clinical_"):
                    raise ConfigError(
                        f"{where}: {path} cannot be searched: it changes how the cohort is read, "
                        "and a study reads it once; set it in the base config"
                    )
                raise ConfigError(f"{where}: the tuner sets {path} itself and cannot search it")
            try:
                check_config_path(path)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            for value in param.extremes():
                self._check_value(where, path, value)
            self._check_registry(where, path, param)

    def _check_value(self, where: str, path: str, value: Any) -> None:
        try:
            load_config(self.config_with({path: value}))
        except ConfigError as exc:
            detail = str(exc).split("\n", 1)[-1].strip()
            raise ConfigError(
                f"{where}: the value {value!r} makes an invalid config: {detail}"
            ) from None

    def _check_registry(self, where: str, path: str, param: ParamSpec) -> None:
        """Names of encoders, fusions and heads must exist (otherwise every such trial fails)."""
        parts = path.split(".")
        registry = None
        if path == "fusion.name":
            from multimodal.fusion import FUSIONS as registry
        elif path == "head.name":
            from multimodal.survival.heads import HEADS as registry
        elif len(parts) == 3 and parts[0] == "encoders" and parts[2] == "name":
            from multimodal.encoders import ENCODERS as registry
        if registry is None or param.type != "categorical":
            return
        for choice in param.choices or []:
            if choice not in registry:
                raise ConfigError(
                    f"{where}: unknown {registry.kind} {choice!r}.{did_you_mean(choice, registry)} "
                    f"Available: {', '.join(registry.names())}"
                )

    def check_modalities(self, available: list[str]) -> None:
        """Every ``data.modalities`` choice (and the base's) must be modalities of the cohort."""
        options = []
        if "data.modalities" in self.search:
            options = [c for c in self.search["data.modalities"].choices or [] if c is not None]
        elif base_modalities := load_config(self.base).data.modalities:
            options = [base_modalities]
        for choice in options:
            unknown = [m for m in choice if m not in available]
            if unknown:
                hints = "".join(did_you_mean(m, available) for m in unknown)
                raise ConfigError(
                    f"{self.source}: data.modalities choice {choice} names {unknown}, which the "
                    f"cohort does not have.{hints} The cohort has: {available}"
                )


def load_tune_spec(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None
) -> TuneSpec:
    """Read and validate a tuning file (or a dict of the same shape).

    Parameters
    ----------
    source : path of a tuning YAML or a dict.
    overrides : ``["train.epochs=20", ...]`` applied to the base config (like ``--set``); they
        are fixed for every trial and kept in best.yaml.
    """
    from multimodal.config import apply_overrides

    if isinstance(source, dict):
        raw, where, folder = copy.deepcopy(source), "dict", Path.cwd()
    else:
        path = Path(source)
        raw = read_yaml_mapping(path, "tuning file")
        where, folder = str(path), path.parent
        raw.setdefault("study", {}).setdefault("name", path.stem)
    if "search" not in raw:
        raise ConfigError(
            f"{where} has no 'search' section: is it a training config? A tuning file holds "
            "'base' (a config), 'search' (dotted key -> distribution) and optional 'overrides', "
            "'objective', 'pruner', 'sampler', 'study' (see docs/tuning.md)"
        )
    try:
        spec = _TuneFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, where)) from None
    base = _load_base(spec.base, folder, where)
    for key, value in spec.overrides.items():
        try:
            check_config_path(key)
        except ConfigError as exc:
            raise ConfigError(f"{where}: overrides.{key}: {exc}") from None
        set_dotted(base, key, value)
    base = apply_overrides(base, overrides)
    for param in spec.search.values():
        _check_finite(param, where)
    return TuneSpec(
        base,
        spec.search,
        spec.objective,
        spec.pruner,
        spec.sampler,
        spec.study,
        source=where,
    )


def _check_finite(param: ParamSpec, where: str) -> None:
    for v in (param.low, param.high):
        if v is not None and not math.isfinite(v):
            raise ConfigError(f"{where}: search bounds must be finite numbers (got {v})")


def _load_base(base: str | dict[str, Any] | None, folder: Path, where: str) -> dict[str, Any]:
    if base is None:
        return {}
    if isinstance(base, dict):
        return copy.deepcopy(base)
    path = Path(base)
    path = path if path.is_absolute() else folder / path
    return read_yaml_mapping(
        path,
        f"{where}: base config",
        hint=f" (paths are relative to {folder})",
        mapping="must hold a mapping",
    )
