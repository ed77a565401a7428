"""Cohort data layer: manifests, modality sources, the :class:`Cohort`, folds and validation.

See ``docs/architecture.md`` (cohort manifest and Cohort sections) and ``data_schemas/``.
"""

from multimodal.data.cohort import Cohort
from multimodal.data.manifest import load_manifest
from multimodal.data.splits import Fold
from multimodal.data.validate import ValidationReport, validate

__all__ = ["Cohort", "Fold", "ValidationReport", "load_manifest", "validate"]
