"""Explanations of trained models: why a prediction (``TrainedModel.explain`` / :func:`explain`).

- :mod:`~multimodal.explain.modality`: per-modality contributions (leave-one-out, exact Shapley
  values over modalities) at the risk level and at horizons, hiding modalities with the model's
  own modality mask.
- :mod:`~multimodal.explain.features`: integrated gradients (captum) of genomic features, summed
  per pathway/group, and of clinical covariates.
- :mod:`~multimodal.explain.text`: attributions of report sentences against a neutral sentence,
  shrunk by the fold models' disagreement, with character spans.
- :mod:`~multimodal.explain.imaging`: occlusion saliency maps (MONAI) and attention weights of
  feature bags.
- :class:`Explanation`: tidy tables, ``.save(folder)`` / ``Explanation.load(folder)``.
"""

from multimodal.explain.core import METHODS, explain
from multimodal.explain.explanation import Explanation

__all__ = ["METHODS", "Explanation", "explain"]
