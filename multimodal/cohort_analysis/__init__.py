"""Cohort analysis with a fitted model: risk groups, Kaplan-Meier, subgroup audit, external
validation. Every function returns a tidy DataFrame (``.to_csv`` exports it).

- :func:`risk_groups`: cut-points fitted on training patients, groups for any patients.
- :func:`km_by_group`: Kaplan-Meier per group, log-rank tests, RMST differences vs the low-risk
  group (lifelines); :func:`km_curves` and :func:`plot_km` for the curves.
- :func:`subgroup_report`: C-index (bootstrap CI), calibration and event rate by sex, age band,
  site, stage and modality-availability pattern, flagging subgroups where the model is worse.
- :func:`external_validation`: metrics on a second cohort and the calibration drift.

Sources of predictions: a run folder (out-of-fold predictions), a
:class:`~multimodal.models.run.TrainedModel` with a cohort, or a predictions DataFrame.
"""

from multimodal.cohort_analysis._inputs import as_predictions, survival_at
from multimodal.cohort_analysis.external import external_validation
from multimodal.cohort_analysis.groups import (
    group_labels,
    km_by_group,
    km_curves,
    plot_km,
    risk_groups,
)
from multimodal.cohort_analysis.subgroups import (
    AGE_BANDS,
    DEFAULT_SUBGROUPS,
    patient_attributes,
    subgroup_report,
)

__all__ = [
    "AGE_BANDS",
    "DEFAULT_SUBGROUPS",
    "as_predictions",
    "external_validation",
    "group_labels",
    "km_by_group",
    "km_curves",
    "patient_attributes",
    "plot_km",
    "risk_groups",
    "subgroup_report",
    "survival_at",
]
