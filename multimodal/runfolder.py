"""The run folder: the one owner of its file names, formats and schema version.

``multimodal train --out RUN_DIR`` writes, and every other command reads::

    RUN_DIR/
      config.yaml            resolved config + ``_meta`` (package_version, git_sha, torch_version,
                             seed, modalities, data_fingerprint, cohort_path, created,
                             schema_version)
      metrics.json           run metrics (mean and std over folds, ``folds``, ``eval_times``)
      predictions.csv        patient_id (str), fold, split, time, event, risk, surv_<t>, ...
      history.csv            per-epoch history of every fold
      model/fold_<k>/        weights.safetensors, model.json (fold meta), preprocess.json
                             (pipeline states), predictions.csv, history.csv, fold.json
                             (metrics, eval_times, config_fingerprint; written last: its presence
                             means the fold is finished)
      checkpoints/           fold_<k>.safetensors and fold_<k>_refit.safetensors (resumable
                             training state: tensors + JSON metadata, no pickles)
      explanations/          written by ``multimodal explain``
      plots/

Every file is written atomically (a temporary file in the same folder, then :func:`os.replace`),
so an interrupted run never leaves a half-written file behind. Every read error is a
:class:`~multimodal.exceptions.RunFolderError` that names the file and says how to fix it.

Schema versions: ``1`` is a folder written before ``_meta.schema_version`` existed (it still
loads; its config goes through :func:`multimodal.config.upgrade_legacy_config`), ``2`` adds
``_meta.schema_version`` to ``config.yaml`` and ``schema_version`` to each fold's ``model.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from multimodal.config import upgrade_legacy_config
from multimodal.exceptions import RunFolderError

if TYPE_CHECKING:  # torch is imported lazily: reading metrics or predictions does not need it
    import torch

__all__ = [
    "SCHEMA_VERSION",
    "RunFolder",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_text",
    "json_default",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION: int = 2
"""Version of the run-folder layout written by this release (1 = before it was recorded)."""

_FOLD_DIR = re.compile(r"^fold_(\d+)$")
_RESUME = "re-run the same `multimodal train` command to resume it (finished folds are reused)"


# ------------------------------------------------------------------------------ atomic writes
def _atomic_write(path: Path, write: Callable[[IO[Any]], None], mode: str) -> None:
    """Call ``write`` on a temporary file next to ``path``, then rename it onto ``path``.

    The temporary file lives in the same folder (a rename across file systems is not atomic) and
    has a unique name, so two writers never share one; it is removed when ``write`` or the rename
    fails, and the previous ``path`` is then left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        text = "b" not in mode
        with open(fd, mode, encoding="utf-8" if text else None, newline="" if text else None) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a crash leaves the old file or the new one.

    Parameters
    ----------
    path : the file; its folder is created when missing.
    text : the content.
    """
    _atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write_text`)."""
    _atomic_write(path, lambda fh: fh.write(data), "wb")


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as CSV (without its index, ``\\n`` line ends) to ``path`` atomically."""
    _atomic_write(path, lambda fh: frame.to_csv(fh, index=False, lineterminator="\n"), "w")


def json_default(o: Any) -> Any:
    """``default=`` for :func:`json.dumps`: numpy integers, floats, booleans and arrays as
    Python numbers and lists.

    Raises
    ------
    TypeError
        For any other type (as :func:`json.dumps` expects).
    """
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(
        f"{type(o).__name__} is not JSON serialisable; run-folder JSON files hold numbers, "
        "strings, lists and dicts (numpy scalars and arrays are converted)"
    )


def _dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=json_default) + "\n"


# ------------------------------------------------------------------------------ the folder
class RunFolder:
    """A run folder written by ``multimodal train`` (layout in the module docstring).

    Creating the object touches nothing on disk: readers raise
    :class:`~multimodal.exceptions.RunFolderError` when their file is missing or unreadable,
    writers create the folders they need.

    Parameters
    ----------
    path : the run folder (``~`` is expanded).

    Attributes
    ----------
    path : Path
        The run folder.

    Examples
    --------
    >>> run = RunFolder("runs/demo/fusion").require()  # doctest: +SKIP
    >>> run.read_metrics()["c_index"]  # doctest: +SKIP
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.json"
    PREDICTIONS = "predictions.csv"
    HISTORY = "history.csv"
    MODEL = "model"
    CHECKPOINTS = "checkpoints"
    EXPLANATIONS = "explanations"
    PLOTS = "plots"
    FOLD_WEIGHTS = "weights.safetensors"
    FOLD_META = "model.json"
    FOLD_PREPROCESS = "preprocess.json"
    FOLD_RESULT = "fold.json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def is_run(self) -> bool:
        """True when the folder holds a ``config.yaml`` (training has started in it)."""
        return self.config_path.is_file()

    def require(self) -> RunFolder:
        """This folder, after checking that it is a run folder.

        Raises
        ------
        RunFolderError
            The folder does not exist, is a file, or has no ``config.yaml``.
        """
        if not self.path.exists():
            raise RunFolderError(
                f"run folder {self.path} does not exist. Give the folder written by "
                "`multimodal train --out RUN_DIR` (the demo writes runs/demo/fusion)."
            )
        if not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a run folder")
        if not self.is_run():
            raise RunFolderError(
                f"{self.path} is not a run folder: {self.CONFIG} is missing. Train one with "
                "`multimodal train --config CONFIG --out RUN_DIR`."
            )
        return self

    # -------------------------------------------------------------------------- config
    @property
    def config_path(self) -> Path:
        """``RUN_DIR/config.yaml``."""
        return self.path / self.CONFIG

    def read_config_raw(self) -> dict[str, Any]:
        """The resolved config as written, ``_meta`` included, upgraded to the current keys.

        Returns
        -------
        dict
            The YAML mapping passed through :func:`multimodal.config.upgrade_legacy_config`.

        Raises
        ------
        RunFolderError
            ``config.yaml`` is missing, is not valid YAML or does not hold a mapping.
        """
        self.require()
        path = self.config_path
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise RunFolderError(
                f"{path} cannot be read as YAML ({exc.__class__.__name__}: {exc}); it is the "
                f"run's resolved config: restore it, or train the run again with `multimodal "
                f"train --config CONFIG --out {self.path}`"
            ) from None
        if not isinstance(raw, dict):
            raise RunFolderError(
                f"{path} holds a {type(raw).__name__}, not a mapping: it is not a run config. "
                f"Train the run again with `multimodal train --config CONFIG --out {self.path}`."
            )
        return upgrade_legacy_config(raw)

    def read_meta(self) -> dict[str, Any]:
        """``_meta`` of ``config.yaml`` (provenance: versions, seed, modalities, ...); ``{}``
        when the run has none."""
        meta = self.read_config_raw().get("_meta") or {}
        if not isinstance(meta, dict):
            raise RunFolderError(
                f"{self.config_path}: _meta holds a {type(meta).__name__}, not a mapping; "
                "remove the _meta entry (provenance is lost) or train the run again"
            )
        return meta

    def schema_version(self) -> int:
        """The run folder's schema version: ``_meta.schema_version``, 1 when absent."""
        version = self.read_meta().get("schema_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RunFolderError(
                f"{self.config_path}: _meta.schema_version is {version!r}; expected a positive "
                f"integer (this release writes {SCHEMA_VERSION}). Remove the entry to read the "
                "folder as schema 1."
            )
        if version > SCHEMA_VERSION:
            log.warning(
                "%s was written with run-folder schema %d, newer than this release's %d; "
                "upgrade multimodal if it cannot be read",
                self.path,
                version,
                SCHEMA_VERSION,
            )
        return version

    def write_config(self, resolved: dict[str, Any]) -> None:
        """Write ``config.yaml`` atomically, with ``_meta.schema_version = SCHEMA_VERSION``.

        Parameters
        ----------
        resolved : the resolved config (``Config.to_dict()``), optionally with ``_meta``;
            it is not modified.
        """
        meta = dict(resolved.get("_meta") or {})
        meta["schema_version"] = SCHEMA_VERSION
        out = {**resolved, "_meta": meta}
        atomic_write_text(self.config_path, yaml.safe_dump(out, sort_keys=False))

    # -------------------------------------------------------------------------- run files
    @property
    def metrics_path(self) -> Path:
        """``RUN_DIR/metrics.json``."""
        return self.path / self.METRICS

    @property
    def predictions_path(self) -> Path:
        """``RUN_DIR/predictions.csv``."""
        return self.path / self.PREDICTIONS

    @property
    def history_path(self) -> Path:
        """``RUN_DIR/history.csv``."""
        return self.path / self.HISTORY

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json``: the run's metrics (``c_index``, ..., ``folds``, ``eval_times``).

        Raises
        ------
        RunFolderError
            The file is missing (training did not finish), is not valid JSON or not an object.
        """
        return _read_json(
            self.metrics_path,
            missing=f"training did not finish; {_RESUME}",
            corrupt=f"{_RESUME} to write it again",
        )

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Write ``metrics.json`` atomically (numpy scalars and arrays converted)."""
        atomic_write_text(self.metrics_path, _dumps(metrics))

    def read_predictions(self) -> pd.DataFrame:
        """``predictions.csv`` with ``patient_id`` as str (one row per patient and fold).

        Raises
        ------
        RunFolderError
            The file is missing (training did not finish) or is not a readable CSV.
        """
        return _read_csv(
            self.predictions_path,
            missing=f"training did not finish; {_RESUME}",
            corrupt=f"{_RESUME} to write it again",
        )

    def write_predictions(self, frame: pd.DataFrame) -> None:
        """Write ``predictions.csv`` atomically."""
        atomic_write_csv(self.predictions_path, frame)

    def read_history(self) -> pd.DataFrame | None:
        """``history.csv`` (per-epoch losses and metrics of every fold); None when absent.

        Raises
        ------
        RunFolderError
            The file exists but is not a readable CSV.
        """
        if not self.history_path.is_file():
            return None
        return _read_csv(self.history_path, missing="", corrupt=f"{_RESUME} to write it again")

    def write_history(self, frame: pd.DataFrame) -> None:
        """Write ``history.csv`` atomically."""
        atomic_write_csv(self.history_path, frame)

    # -------------------------------------------------------------------------- folds
    @property
    def model_dir(self) -> Path:
        """``RUN_DIR/model`` (one ``fold_<k>`` folder per trained fold)."""
        return self.path / self.MODEL

    def fold_dir(self, k: int) -> Path:
        """``RUN_DIR/model/fold_<k>``: the final model and results of fold ``k``."""
        return self.model_dir / f"fold_{int(k)}"

    def finished_folds(self) -> list[int]:
        """Indices ``k`` of the folds whose ``model/fold_<k>/fold.json`` exists, sorted."""
        if not self.model_dir.is_dir():
            return []
        done = []
        for folder in self.model_dir.iterdir():
            m = _FOLD_DIR.match(folder.name)
            if m and (folder / self.FOLD_RESULT).is_file():
                done.append(int(m.group(1)))
        return sorted(done)

    def is_fold_finished(self, k: int) -> bool:
        """True when fold ``k`` wrote its ``fold.json`` (every other fold file is then complete)."""
        return (self.fold_dir(k) / self.FOLD_RESULT).is_file()

    def write_fold(
        self,
        k: int,
        *,
        state_dict: dict[str, torch.Tensor],
        model_meta: dict[str, Any],
        preprocess: dict[str, Any],
        predictions: pd.DataFrame,
        history: pd.DataFrame,
        result: dict[str, Any],
    ) -> None:
        """Write the files of finished fold ``k``, each atomically, ``fold.json`` last.

        An earlier ``fold.json`` is removed first, so that a fold interrupted while its files
        are being replaced never reads as finished.

        Parameters
        ----------
        k : fold index.
        state_dict : the model's tensors (detached, moved to the CPU, made contiguous here).
        model_meta : ``model.json`` (input specs, cuts, risk centres, ...);
            ``schema_version`` is added.
        preprocess : ``preprocess.json``: modality -> fitted pipeline state.
        predictions, history : the fold's ``predictions.csv`` and ``history.csv``.
        result : ``fold.json``: ``metrics``, ``eval_times``, ``config_fingerprint``.
        """
        from safetensors.torch import save

        folder = self.fold_dir(k)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.FOLD_RESULT).unlink(missing_ok=True)
        tensors = {name: t.detach().cpu().contiguous() for name, t in state_dict.items()}
        data = save(tensors)
        atomic_write_bytes(folder / self.FOLD_WEIGHTS, data)
        # the weights' hash: weights copied in from another run are refused when they load
        meta = {
            **model_meta,
            "schema_version": SCHEMA_VERSION,
            "weights_sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic_write_text(folder / self.FOLD_META, _dumps(meta))
        atomic_write_text(folder / self.FOLD_PREPROCESS, _dumps(preprocess, indent=None))
        atomic_write_csv(folder / self.PREDICTIONS, predictions)
        atomic_write_csv(folder / self.HISTORY, history)
        atomic_write_text(folder / self.FOLD_RESULT, _dumps(result))

    def read_fold_result(self, k: int) -> dict[str, Any]:
        """``model/fold_<k>/fold.json``: ``metrics``, ``eval_times``, ``config_fingerprint``."""
        return _read_json(
            self.fold_dir(k) / self.FOLD_RESULT,
            missing=f"fold {k} did not finish; {_RESUME}",
            corrupt=self._retrain_fold(k),
        )

    def read_fold_meta(self, k: int) -> dict[str, Any]:
        """``model/fold_<k>/model.json``: input specs, time grid and risk centres of the fold."""
        return self._read_fold_json(k, self.FOLD_META)

    def read_fold_preprocess(self, k: int) -> dict[str, Any]:
        """``model/fold_<k>/preprocess.json``: modality -> fitted preprocessing state."""
        return self._read_fold_json(k, self.FOLD_PREPROCESS)

    def read_fold_predictions(self, k: int) -> pd.DataFrame:
        """``model/fold_<k>/predictions.csv`` (``patient_id`` as str)."""
        return _read_csv(
            self.fold_dir(k) / self.PREDICTIONS,
            missing=self._incomplete_fold(k),
            corrupt=self._retrain_fold(k),
        )

    def read_fold_history(self, k: int) -> pd.DataFrame:
        """``model/fold_<k>/history.csv``."""
        return _read_csv(
            self.fold_dir(k) / self.HISTORY,
            missing=self._incomplete_fold(k),
            corrupt=self._retrain_fold(k),
        )

    def read_fold_weights(self, k: int) -> dict[str, torch.Tensor]:
        """The tensors of ``model/fold_<k>/weights.safetensors`` (on the CPU).

        Raises
        ------
        RunFolderError
            The file is missing or cannot be read as safetensors.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.fold_dir(k) / self.FOLD_WEIGHTS
        if not path.is_file():
            raise RunFolderError(f"{path} is missing: {self._incomplete_fold(k)}")
        expected = self.read_fold_meta(k).get("weights_sha256")
        if expected is not None and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise RunFolderError(
                f"{path} is not the file this fold wrote (its hash differs from the one in "
                f"model.json: the file is corrupt, or was copied in from another run); it is not "
                f"used. {self._retrain_fold(k)}"
            )
        try:
            return load_file(str(path))
        except (OSError, ValueError, SafetensorError) as exc:
            raise RunFolderError(
                f"{path} cannot be read as safetensors ({exc}); {self._retrain_fold(k)}"
            ) from None

    def _read_fold_json(self, k: int, name: str) -> dict[str, Any]:
        return _read_json(
            self.fold_dir(k) / name,
            missing=self._incomplete_fold(k),
            corrupt=self._retrain_fold(k),
        )

    def _incomplete_fold(self, k: int) -> str:
        if self.is_fold_finished(k):
            return (
                f"fold {k} is incomplete although it wrote {self.FOLD_RESULT}; "
                f"{self._retrain_fold(k)}"
            )
        return f"fold {k} did not finish; {_RESUME}"

    def _retrain_fold(self, k: int) -> str:
        return (
            f"delete {self.fold_dir(k)} and re-run the same `multimodal train` command to train "
            "the fold again"
        )

    # -------------------------------------------------------------------------- other folders
    def clear_results(self) -> None:
        """Delete what training wrote (``model/``, ``checkpoints/``, ``explanations/``, ``plots/``,
        run metrics, predictions, history and ``config.yaml``): the run starts over."""
        import shutil

        for folder in (self.model_dir, self.checkpoints_dir, self.explanations_dir, self.plots_dir):
            if folder.is_dir():
                shutil.rmtree(folder)
        for path in (self.metrics_path, self.predictions_path, self.history_path, self.config_path):
            path.unlink(missing_ok=True)

    def checkpoint_path(self, k: int, refit: bool = False) -> Path:
        """``checkpoints/fold_<k>.safetensors`` (or ``fold_<k>_refit.safetensors``): resumable
        training state (:class:`multimodal.training.resume.TrainingState`). Releases before
        schema 2 wrote ``.pt`` files beside it (read with ``weights_only=True``)."""
        return self.checkpoints_dir / f"fold_{int(k)}{'_refit' if refit else ''}.safetensors"

    @property
    def checkpoints_dir(self) -> Path:
        """``RUN_DIR/checkpoints``."""
        return self.path / self.CHECKPOINTS

    @property
    def explanations_dir(self) -> Path:
        """``RUN_DIR/explanations`` (written by ``multimodal explain``)."""
        return self.path / self.EXPLANATIONS

    @property
    def plots_dir(self) -> Path:
        """``RUN_DIR/plots``."""
        return self.path / self.PLOTS


# ------------------------------------------------------------------------------ readers
def _read_json(path: Path, *, missing: str, corrupt: str) -> dict[str, Any]:
    """A JSON object from ``path``; RunFolderError ``"<path> is missing: <missing>"`` or
    ``"<path> is not valid JSON (...); <corrupt>"``."""
    if not path.is_file():
        raise RunFolderError(f"{path} is missing: {missing}")
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunFolderError(f"{path} is not valid JSON ({exc}); {corrupt}") from None
    if not isinstance(out, dict):
        raise RunFolderError(f"{path} holds a JSON {type(out).__name__}, not an object; {corrupt}")
    return out


def _read_csv(path: Path, *, missing: str, corrupt: str) -> pd.DataFrame:
    """A CSV table from ``path`` (``patient_id`` read as str when present); RunFolderError
    ``"<path> is missing: <missing>"`` or ``"<path> cannot be read as CSV (...); <corrupt>"``.

    Numbers are parsed exactly (``float_precision="round_trip"``): pandas' default parser may
    land one ulp off the written value, and a table read and written again (a resumed run's
    reused folds) must print the same digits.
    """
    if not path.is_file():
        raise RunFolderError(f"{path} is missing: {missing}")
    try:
        return pd.read_csv(path, dtype={"patient_id": str}, float_precision="round_trip")
    except (OSError, ValueError) as exc:  # ParserError, EmptyDataError, UnicodeDecodeError
        raise RunFolderError(f"{path} cannot be read as CSV ({exc}); {corrupt}") from None
