"""Exception hierarchy.

Every error raised on user input says what is wrong, where (file, row, patient, column), what was
found, and how to fix it. Catch :class:`MultimodalError` to handle any of them.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "LeakageError",
    "MissingModalityError",
    "MultimodalError",
    "RunFolderError",
    "SchemaError",
    "TuningError",
]


class MultimodalError(Exception):
    """Base class of every error this package raises on purpose."""


class SchemaError(MultimodalError, ValueError):
    """A manifest, table or file does not follow its schema (data_schemas/)."""


class DataError(MultimodalError, ValueError):
    """Values in a table are invalid (negative times, bad event codes, corrupt files, ...)."""


class LeakageError(MultimodalError, ValueError):
    """Outcome information would reach the model (outcome columns as features, overlapping folds)."""


class MissingModalityError(MultimodalError, KeyError):
    """A modality the caller asked for is not in the cohort or the model."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ConfigError(MultimodalError, ValueError):
    """A config file or override is invalid."""


class RunFolderError(MultimodalError, FileNotFoundError):
    """A run folder is missing files or holds files that cannot be read."""


class TuningError(MultimodalError, RuntimeError):
    """An Optuna study cannot run or continue (a mismatched study, every trial failing, ...)."""
