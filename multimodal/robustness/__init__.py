"""How much a trained run's predictions move under small, stated changes of its inputs.

Every fold model predicts its own validation patients (out-of-fold, as in ``predictions.csv``)
once as they are and once per perturbation; the quantity compared is the predicted event
probability by a round horizon (3 years in the cohort's time unit, or the nearest round horizon
that at least 10% of the patients are still followed at). Per modality:

- clinical covariates, genomic values and feature bags: Gaussian noise on the preprocessed values,
  ``size`` standard deviations of the training fold (the pipelines z-score numeric covariates and
  genomic values; bag features are scaled by their spread over the patients' instances); missing
  values stay missing;
- report text: ``size`` sentences removed at random from the raw report, then the report goes
  through the fold's own text pipeline (sentence split, embedding, pooling, scaling);
- images: Gaussian noise (``image_noise``) or a constant shift (``image_shift``) of ``size`` times
  the image's own intensity standard deviation, on the raw voxels (NIfTI or PNG files copied to a
  temporary folder), then the fold's own image pipeline (resize, intensity normalisation, frozen
  backbone and scaling when the run uses one). A per-image normalisation (``scale``, ``zscore``)
  removes a shift exactly: its row then shows no change, which is the finding;
- every modality, hidden for everyone: its mask is set to "missing", as for a patient without it
  (the model's own missing-modality path; the linear member and the fusion both lose it).

For each perturbation: Spearman's rank correlation and the mean absolute change (percentage
points) of the event probability over the patients whose input changed, how many change risk
group (tertiles of the unperturbed event probability over all validation patients), and the
C-index (Harrell, mean over folds, as ``metrics.json``) with the perturbation applied. Random
draws are seeded by ``(seed, perturbation, fold)``: the same call gives the same table.
"""

from multimodal.robustness.horizons import (
    YEAR_IN,
    find_run_cohort,
    horizon_label,
    round_horizon,
    time_unit_of,
)
from multimodal.robustness.measure import (
    RobustnessResult,
    out_of_fold_predictions,
    plot_robustness,
    robustness,
)
from multimodal.robustness.perturbations import (
    DEFAULT_SIZES,
    KINDS_FOR,
    Perturbation,
    default_perturbations,
)

__all__ = [
    "DEFAULT_SIZES",
    "KINDS_FOR",
    "YEAR_IN",
    "Perturbation",
    "RobustnessResult",
    "default_perturbations",
    "find_run_cohort",
    "horizon_label",
    "out_of_fold_predictions",
    "plot_robustness",
    "robustness",
    "round_horizon",
    "time_unit_of",
]
