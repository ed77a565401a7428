"""Image saliency by occlusion (MONAI ``OcclusionSensitivity``) and attention over feature bags.

Occlusion: a box of the preprocessed image is replaced by a baseline intensity and the model's
risk is recomputed; a voxel's saliency is ``risk(image) - risk(image with the box over it
occluded)``, averaged over the boxes covering it. Positive saliency = the region raised the
predicted risk. The baseline is the image's median intensity by default (the surrounding tissue in
a CT that fills the field of view), so occluding plain tissue changes nothing while occluding a
bright lesion does. Saliency maps have the shape of the preprocessed image, ``(C, *image_size)``,
and are averaged over the fold models. Occlusion costs a few hundred forward passes per image and
fold, which is why :func:`multimodal.explain.explain` limits it to the first patients by default.

Feature bags (``attention_mil``): the gated-attention weight of every instance (patch, slide
feature) of a patient's bag, averaged over the fold models.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from multimodal.explain._forward import (
    BATCH,
    FoldInputs,
    encode,
    head_outputs,
    present_matrix,
    risk_of,
    take,
    to_device,
)

__all__ = ["bag_attention", "image_saliency", "occlusion_saliency"]

Baseline = Literal["median", "mean_img", "mean_patch", "gaussian"] | float


class _RiskModule(nn.Module):
    """``risk_fn`` as the (B, 1) "classifier" MONAI's occlusion expects."""

    def __init__(self, risk_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.risk_fn = risk_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.risk_fn(torch.as_tensor(x)).reshape(-1, 1).float()


@torch.no_grad()
def occlusion_saliency(
    risk_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    mask_size: int | Sequence[int] | None = None,
    overlap: float = 0.5,
    baseline: Baseline = "median",
    n_batch: int = 64,
) -> np.ndarray:
    """Occlusion saliency of one image.

    Parameters
    ----------
    risk_fn : images (k, C, *S) -> risk (k,), higher = worse.
    image : (C, *S) preprocessed image.
    mask_size : side of the occluding box in voxels (default: a quarter of each side, >= 2).
    overlap : overlap of neighbouring boxes in [0, 1).
    baseline : intensity put in the box: ``"median"`` (the image's median), a number, or a MONAI
        mode (``"mean_img"``, ``"mean_patch"``, ``"gaussian"``).
    n_batch : occluded images per forward pass.

    Returns
    -------
    ndarray float32 (C, *S): ``risk(image) - risk(occluded)``, averaged over the boxes covering each
    voxel (every channel of a voxel gets the same value: boxes occlude all channels).
    """
    from monai.visualize import OcclusionSensitivity

    image = torch.as_tensor(image).float()
    spatial = tuple(int(s) for s in image.shape[1:])
    if mask_size is None:
        mask_size = [max(2, s // 4) for s in spatial]
    mode: Any = float(image.median()) if baseline == "median" else baseline
    occ = OcclusionSensitivity(
        _RiskModule(risk_fn),
        mask_size=mask_size,
        n_batch=n_batch,
        verbose=False,
        mode=mode,
        overlap=overlap,
        activate=False,
    )
    with warnings.catch_warnings():  # MONAI indexes with lists (a torch deprecation warning)
        warnings.simplefilter("ignore", UserWarning)
        occ_map, _ = occ(image.unsqueeze(0))
    full = float(risk_fn(image.unsqueeze(0)).reshape(-1)[0])
    sal = full - torch.as_tensor(occ_map)[0, 0].float().cpu().numpy()
    return np.broadcast_to(sal, image.shape).astype(np.float32).copy()


def _image_modalities(fi: FoldInputs) -> list[str]:
    specs = fi.model.specs
    return [
        m
        for m in fi.model.modalities
        if specs[m].kind == "imaging" and specs[m].in_features is None
    ]


def _patient_risk_fn(fi: FoldInputs, m: str, row: int, emb: dict[str, Any]):
    present = present_matrix(fi.data, fi.model.modalities)[row]
    single = {k: take(v, [row]) for k, v in emb.items()}

    def risk_fn(x: torch.Tensor) -> torch.Tensor:
        k = x.shape[0]
        rows = np.full(k, row)
        e = {n: take(v, np.zeros(k, dtype=np.int64)) for n, v in single.items()}
        mask = {n: torch.full((k,), bool(present[j])) for j, n in enumerate(fi.model.modalities)}
        out = head_outputs(fi, rows, mask, e, live={m: x.to(fi.device)})
        return risk_of(fi.model, out).cpu()

    return risk_fn


def image_saliency(
    folds: list[FoldInputs],
    cohort: Any,
    limit: int | None = 20,
    mask_size: int | Sequence[int] | None = None,
    overlap: float = 0.5,
    baseline: Baseline = "median",
) -> tuple[pd.DataFrame, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]:
    """Occlusion saliency for the images of the explained patients (the first ``limit`` of each
    imaging modality; None = all).

    Returns
    -------
    (index, maps): ``index`` has ``patient_id, modality, image_path, shape``; ``maps`` maps
    ``(patient_id, modality)`` to ``(saliency (C, *S), preprocessed image (C, *S))``.
    Encoders over frozen image embeddings (``image_embedding``) have no voxels and are skipped.
    """
    mods = _image_modalities(folds[0])
    maps: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    records = []
    for m in mods:
        rows = np.flatnonzero(folds[0].data.stores[m].present)
        rows = rows if limit is None else rows[: int(limit)]
        acc = {int(r): 0.0 for r in rows}
        for fi in folds:
            emb = encode(fi.model, fi.data, fi.device, [k for k in fi.model.modalities if k != m])
            for r in rows:
                image = fi.data.stores[m].values[int(r)]
                sal = occlusion_saliency(
                    _patient_risk_fn(fi, m, int(r), emb), image, mask_size, overlap, baseline
                )
                acc[int(r)] = acc[int(r)] + sal / len(folds)
        table = cohort.sources[m].table
        for r in rows:
            pid = folds[0].data.ids[int(r)]
            image = folds[0].data.stores[m].values[int(r)].numpy()
            maps[(pid, m)] = (np.asarray(acc[int(r)], dtype=np.float32), image)
            path = table.loc[[pid], "path"].iloc[0] if pid in table.index else ""
            records.append((pid, m, str(path), "x".join(map(str, image.shape))))
    index = pd.DataFrame(records, columns=["patient_id", "modality", "image_path", "shape"])
    return index, maps


def bag_attention(folds: list[FoldInputs]) -> pd.DataFrame:
    """Attention weight of every instance of every feature bag, averaged over the fold models.

    Returns
    -------
    DataFrame ``patient_id, modality, instance, attention`` (instance = position in the patient's
    bag, slides concatenated in the order of the cohort's bag table).
    """
    model = folds[0].model
    mods = [
        m
        for m in model.modalities
        if model.specs[m].kind == "feature_bag"
        and hasattr(model.encoders[m], "forward_with_attention")
    ]
    frames = []
    for m in mods:
        rows = np.flatnonzero(folds[0].data.stores[m].present)
        weights: dict[int, np.ndarray] = {}
        for fi in folds:
            store = fi.data.stores[m]
            with torch.no_grad():
                for start in range(0, len(rows), BATCH):
                    idx = rows[start : start + BATCH]
                    x = to_device(store.batch(idx), fi.device)
                    _, w = fi.model.encoders[m].forward_with_attention(x)
                    counts = x.mask.sum(1).cpu().numpy()
                    for i, r in enumerate(idx):
                        wr = w[i, : int(counts[i])].float().cpu().numpy() / len(folds)
                        weights[int(r)] = weights.get(int(r), 0.0) + wr
        for r, w in weights.items():
            frames.append(
                pd.DataFrame(
                    {
                        "patient_id": folds[0].data.ids[r],
                        "modality": m,
                        "instance": np.arange(len(w)),
                        "attention": w,
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["patient_id", "modality", "instance", "attention"])
    return pd.concat(frames, ignore_index=True)
