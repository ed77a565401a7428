"""Data behind the Streamlit dashboard (``app/``): reads a run folder, never trains.

- :mod:`~multimodal.dashboard.run_data` -- the run folder's artefacts and out-of-fold predictions.
- :mod:`~multimodal.dashboard.cohort_stats` -- risk groups, Kaplan-Meier, log-rank, metrics, calibration.
- :mod:`~multimodal.dashboard.patient` -- a patient's curve with the fold-ensemble spread.
- :mod:`~multimodal.dashboard.landmark` -- landmark runs: metrics at each landmark, biomarker
  trajectories, the predicted risk at each visit.
- :mod:`~multimodal.dashboard.evidence` -- modality contributions, sentences, genes, saliency.
- :mod:`~multimodal.dashboard.ood` -- out-of-distribution flags.
- :mod:`~multimodal.dashboard.new_patient` -- a one-patient cohort from a form.
- :mod:`~multimodal.dashboard.visits` -- a new patient's visits (landmark runs).
- :mod:`~multimodal.dashboard.launch` -- the ``streamlit run`` command line.
"""

from multimodal.dashboard.run_data import Endpoint, RunData, find_cohort, load_run_data

__all__ = ["Endpoint", "RunData", "find_cohort", "load_run_data"]
