"""TCGA cancer folders (``shared/data/tcga/<cancer>/``, PORPOISE/MCAT layout) as a :class:`Cohort`.

The column mapping (``survival_months`` -> ``time``, the CDR progression endpoints, the modality
files) is described and done in :mod:`multimodal.data.tcga_tables`, below the cohort;
:func:`load_tcga` (collects problems instead of raising, as :func:`multimodal.data.validate`
needs) lives with :class:`Cohort`, whose :meth:`~Cohort.from_tcga` and :meth:`~Cohort.load` are
the usual entry points. This module keeps the names importable from here.
"""

from __future__ import annotations

from multimodal.data.cohort import load_tcga
from multimodal.data.tcga_tables import DAYS_PER_MONTH, GENOMICS_GROUP_SUFFIXES, TEXT_FILES

__all__ = ["DAYS_PER_MONTH", "GENOMICS_GROUP_SUFFIXES", "TEXT_FILES", "load_tcga"]
