"""The perturbations: what each one changes, and how it is applied to one fold's patients.

Tabular and bag inputs are perturbed in their preprocessed stores (z-scored values); report text
and images at the source (a report without some sentences, a copy of the image file), then through
the fold's own fitted pipeline. Hiding a modality sets its mask to "missing".
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.exceptions import DataError
from multimodal.training.preprocess import PIPELINES, FoldData, split_sentences
from multimodal.training.stores import DenseStore, DictStore, ModalityStore, TokenStore

__all__ = [
    "APPLY",
    "DEFAULT_SIZES",
    "KINDS_FOR",
    "FoldCase",
    "Perturbation",
    "default_perturbations",
]

#: Perturbation sizes tried per kind (the first, smallest one decides the listed flips).
DEFAULT_SIZES: dict[str, tuple[float, ...]] = {
    "noise": (0.05, 0.1, 0.2),
    "sentences": (1, 2),
    # in SDs of the whole image (a CT's SD, air to bone, is ~500 HU: 0.01 SD is ~5 HU)
    "image_noise": (0.01, 0.05),
    "image_shift": (0.1,),
}

#: Perturbation kinds that apply to each modality kind.
KINDS_FOR: dict[str, tuple[str, ...]] = {
    "clinical": ("noise",),
    "genomics": ("noise",),
    "feature_bag": ("noise",),
    "text": ("sentences",),
    "imaging": ("image_noise", "image_shift"),
}


@dataclass(frozen=True)
class Perturbation:
    """One stated change of one modality's input.

    Attributes
    ----------
    modality : the modality's name in the run.
    kind : ``noise`` | ``sentences`` | ``image_noise`` | ``image_shift`` | ``drop``.
    size : SD units for noise and shifts, sentences for ``sentences``, unused for ``drop``.
    """

    modality: str
    kind: str
    size: float = 0.0

    @property
    def label(self) -> str:
        """Short name, e.g. ``genomics: noise 0.1 SD``."""
        what = {
            "noise": f"noise {self.size:g} SD",
            "sentences": f"{self.size:g} sentence{'s' if self.size != 1 else ''} removed",
            "image_noise": f"intensity noise {self.size:g} SD",
            "image_shift": f"intensity shift +{self.size:g} SD",
            "drop": "hidden for everyone",
        }[self.kind]
        return f"{self.modality}: {what}"

    def describe(self, modality_kind: str) -> str:
        """One sentence saying exactly what is changed."""
        s = f"{self.size:g}"
        if self.kind == "noise" and modality_kind == "clinical":
            return f"Gaussian noise of {s} training SD added to each observed numeric covariate."
        if self.kind == "noise" and modality_kind == "feature_bag":
            return f"Gaussian noise of {s} SD (per feature, over all instances) on every instance."
        if self.kind == "noise":
            return f"Gaussian noise of {s} training SD added to every (z-scored) feature."
        if self.kind == "sentences":
            return f"{s} sentence(s) of the report removed at random (reports that long only)."
        if self.kind == "image_noise":
            return f"Gaussian noise of {s} x the image's intensity SD added to every raw voxel."
        if self.kind == "image_shift":
            return f"Raw intensities shifted by +{s} x the image's intensity SD."
        return "The modality is marked missing for every patient (as for a patient without it)."


def default_perturbations(
    modality_kinds: dict[str, str], sizes: dict[str, Sequence[float]] | None = None
) -> list[Perturbation]:
    """The perturbations of :data:`KINDS_FOR` at :data:`DEFAULT_SIZES` (``sizes`` overrides a
    kind's sizes), in modality order, smallest size first."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    out = []
    for m, mkind in modality_kinds.items():
        for kind in KINDS_FOR.get(mkind, ()):
            out += [Perturbation(m, kind, float(s)) for s in sorted(sizes.get(kind, ()))]
    return out


@dataclass
class FoldCase:
    """One fold model and its validation patients, preprocessed its way."""

    fm: Any
    cohort: Any
    data: FoldData

    def with_store(self, m: str, store: ModalityStore) -> FoldData:
        return dataclasses.replace(self.data, stores={**self.data.stores, m: store})


def _noise(
    fold: FoldCase, p: Perturbation, rng: np.random.Generator
) -> tuple[ModalityStore, np.ndarray]:
    store = fold.data.stores[p.modality]
    present = np.asarray(store.present, bool)
    if isinstance(store, DictStore) and "numeric" in store.values:  # clinical covariates
        values = {k: v.clone() for k, v in store.values.items()}
        x = values["numeric"]
        observed = (values["numeric_missing"] == 0).numpy() & present[:, None]
        draw = rng.normal(0.0, p.size, size=tuple(x.shape))
        x += torch.from_numpy(np.where(observed, draw, 0.0)).to(x.dtype)
        changed = observed.any(axis=1)
        return dataclasses.replace(store, values=values), changed
    if isinstance(store, TokenStore):  # feature bags: per-feature SD over the instances
        bags = [b for b, ok in zip(store.values, present) if ok and len(b)]
        sd = torch.cat(bags).float().std(0) if bags else None
        values = []
        for b, ok in zip(store.values, present):
            if ok and len(b) and sd is not None:
                draw = torch.from_numpy(rng.normal(0.0, p.size, size=tuple(b.shape))).float()
                b = b + draw * sd
            values.append(b)
        changed = np.array([ok and len(b) > 0 for b, ok in zip(store.values, present)])
        return dataclasses.replace(store, values=values), changed
    if isinstance(store, DenseStore):
        values = store.values.clone()
        draw = rng.normal(0.0, p.size, size=tuple(values.shape))
        mask = present.reshape(-1, *([1] * (values.dim() - 1)))
        values += torch.from_numpy(np.where(mask, draw, 0.0)).to(values.dtype)
        return dataclasses.replace(store, values=values), present.copy()
    raise DataError(f"{p.label}: no noise for a {type(store).__name__}")


def _sentences(
    fold: FoldCase, p: Perturbation, rng: np.random.Generator
) -> tuple[ModalityStore, np.ndarray]:
    source = fold.cohort.sources[p.modality]
    ids = fold.data.ids
    texts = source.texts()
    k = int(p.size)
    rows, changed = [], np.zeros(len(ids), bool)
    for i, pid in enumerate(ids):
        if pid not in texts.index or not isinstance(texts[pid], str):
            continue
        sentences = split_sentences(texts[pid])
        if len(sentences) > k:
            drop = set(rng.choice(len(sentences), size=k, replace=False).tolist())
            sentences = [s for j, s in enumerate(sentences) if j not in drop]
            changed[i] = True
        rows.append((pid, "\n".join(sentences)))
    view = source.subset(ids)
    view.table = pd.DataFrame(rows, columns=["patient_id", "text"])
    return fold.fm.pipelines[p.modality].transform(view, ids), changed


def _perturbed_image(
    path: Path, out: Path, p: Perturbation, rng: np.random.Generator
) -> Path | None:
    """A perturbed copy of a NIfTI or PNG file under ``out`` (None for other formats)."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        img = nib.load(str(path))
        x = np.asarray(img.dataobj, dtype=np.float32)
        y = _change_intensity(x, p, rng)
        header = img.header.copy()
        header.set_data_dtype(np.float32)
        target = out / (path.name.removesuffix(".gz").removesuffix(".GZ"))  # no time compressing
        nib.save(nib.Nifti1Image(y, img.affine, header), str(target))
        return target
    if name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as im:
            mode = im.mode
            x = np.asarray(im, dtype=np.float32)
        top = 65535.0 if x.max() > 255 else 255.0
        y = np.clip(np.rint(_change_intensity(x, p, rng)), 0, top)
        target = out / path.name
        Image.fromarray(y.astype(np.uint16 if top > 255 else np.uint8)).convert(mode).save(target)
        return target
    return None


def _change_intensity(x: np.ndarray, p: Perturbation, rng: np.random.Generator) -> np.ndarray:
    sd = float(x.std()) or 1.0
    if p.kind == "image_shift":
        return x + p.size * sd
    return x + rng.normal(0.0, p.size * sd, size=x.shape).astype(np.float32)


def _image(
    fold: FoldCase, p: Perturbation, rng: np.random.Generator
) -> tuple[ModalityStore, np.ndarray]:
    source = fold.cohort.sources[p.modality]
    ids = fold.data.ids
    view = source.subset(ids)
    table = view.table[~view.table.index.duplicated()].copy()  # the pipeline uses the first image
    changed = np.zeros(len(ids), bool)
    pipe = fold.fm.pipelines[p.modality]
    with tempfile.TemporaryDirectory(prefix="mm-robustness-") as tmp:
        out = Path(tmp)
        position = {pid: i for i, pid in enumerate(ids)}
        for pid in table.index:
            target = _perturbed_image(Path(str(table.at[pid, "path"])), out, p, rng)
            if target is None:
                raise DataError(f"{p.label}: only NIfTI and PNG images can be perturbed")
            table.at[pid, "path"] = str(target)
            changed[position[str(pid)]] = True
        view.table = table
        # a fresh pipeline with the fold's fitted state and its own caches: the perturbed files
        # never enter the run's embedding cache
        ctx = dataclasses.replace(pipe.ctx, memo={}, cache_dir=out / "cache")
        fresh = PIPELINES.get(pipe.kind)(ctx, pipe.encoder).load_state(pipe.state())
        store = fresh.transform(view, ids)
    return store, changed & np.asarray(fold.data.stores[p.modality].present, bool)


def _drop(
    fold: FoldCase, p: Perturbation, rng: np.random.Generator
) -> tuple[ModalityStore, np.ndarray]:
    store = fold.data.stores[p.modality]
    present = np.asarray(store.present, bool)
    return dataclasses.replace(store, present=np.zeros_like(present)), present.copy()


APPLY: dict[
    str, Callable[[FoldCase, Perturbation, np.random.Generator], tuple[ModalityStore, np.ndarray]]
] = {
    "noise": _noise,
    "sentences": _sentences,
    "image_noise": _image,
    "image_shift": _image,
    "drop": _drop,
}
