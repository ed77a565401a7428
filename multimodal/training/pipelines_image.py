"""Pipelines of images (resized volumes, or frozen-backbone embeddings) and feature bags."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from multimodal.training.pipeline_base import (
    PIPELINES,
    ModalityPipeline,
    _present,
    _saved_stats,
    default_cache_dir,
)
from multimodal.training.stores import DenseStore, TokenStore
from multimodal.types import InputSpec

__all__ = ["FeatureBagPipeline", "ImagingPipeline"]

log = logging.getLogger(__name__)


@PIPELINES.register("imaging")
class ImagingPipeline(ModalityPipeline):
    """Images loaded with MONAI transforms, resized to ``image_size`` and kept in memory.

    With the ``image_embedding`` encoder the images are instead embedded once by the frozen
    backbone ``data.frozen_image_encoder`` (embeddings cached on disk, keyed by the backbone's
    weights, the file and the settings) and only the small encoder over the embeddings trains.
    The embeddings are standardised with the training fold's mean and standard deviation: a
    frozen backbone's features come on an arbitrary scale (a random-init CNN's vary by about 1e-4
    around 0.07), which a ridge penalty or an MLP would otherwise treat as no signal at all.

    Fitting records what the cache key needs of the backbone (its weights fingerprint, class name
    and out_dim, plus the size and mtime of its ``pretrained_path``) in :meth:`state`, so a loaded
    run finds cached embeddings without building the backbone (and importing MONAI); it is built
    only for images not in the cache, or when the recorded facts no longer hold.
    """

    kind = "imaging"
    FROZEN_ENCODERS: ClassVar[set[str]] = {"image_embedding"}

    def _paths(self, source: Any, ids: list[str]) -> tuple[np.ndarray, list[str]]:
        table = source.table
        present = _present(table.index, ids)
        # first image when a patient has several
        paths = [str(table.loc[[pid], "path"].iloc[0]) for pid, p in zip(ids, present) if p]
        return present, paths

    def fit(self, source: Any, train_ids: list[str]) -> ImagingPipeline:
        self.mean_ = self.std_ = None
        self.backbone_ = None  # training builds the backbone: its facts are recorded anew
        if self.encoder not in self.FROZEN_ENCODERS:
            return self
        store = self._embedded(source, list(train_ids))
        self.backbone_ = self._backbone_facts(*self._geometry(source))
        if store.present.any():
            # float64: the features' spread can be 1e-4 of their mean, below float32's resolution
            rows = store.values.numpy()[store.present].astype(np.float64)
            self.mean_ = rows.mean(0)
            self.std_ = np.maximum(rows.std(0), 1e-6 * max(float(np.abs(rows).max()), 1e-12))
        return self

    def transform(self, source: Any, ids: list[str]) -> DenseStore:
        if self.encoder in self.FROZEN_ENCODERS:
            store = self._embedded(source, ids)
            if getattr(self, "mean_", None) is not None:
                x = (store.values.numpy().astype(np.float64) - self.mean_) / self.std_
                x[~store.present] = 0.0  # placeholder rows, masked out downstream
                store.values = torch.from_numpy(x.astype(np.float32))
            return store
        dims, size = self._geometry(source)
        from multimodal.encoders.imaging import load_image

        present, paths = self._paths(source, ids)
        chosen = [pid for pid, p in zip(ids, present) if p]
        loaded = {}
        for pid, path in zip(chosen, paths):
            key = f"image:{path}:{size}:{self.ctx.image_intensity}"
            if key not in self.ctx.memo:
                self.ctx.memo[key] = _for_patient(
                    source,
                    pid,
                    lambda path=path: load_image(
                        path, spatial_dims=dims, image_size=size, normalize=self.ctx.image_intensity
                    ),
                )
            loaded[pid] = (path, self.ctx.memo[key])
        _check_same_shape(source, loaded, "image", "loads as (channels, *image_size)")
        images = [loaded[pid][1] if pid in loaded else None for pid in ids]
        ref = next((im for im in images if im is not None), torch.zeros(1, *size))
        values = torch.stack([im if im is not None else torch.zeros_like(ref) for im in images])
        spec = InputSpec(
            kind="imaging", spatial_dims=dims, in_channels=int(ref.shape[0]), image_size=size
        )
        return DenseStore(spec=spec, present=present, values=values.float())

    def _backbone(self, dims: int, size: tuple[int, ...]) -> torch.nn.Module:
        from multimodal.encoders import ENCODERS
        from multimodal.exceptions import ConfigError

        bb = self.ctx.frozen_image_encoder
        if not bb:
            raise ConfigError(
                "the image_embedding encoder needs a frozen backbone: set data.frozen_image_encoder, "
                "e.g. {name: resnet, out_dim: 64, options: {pretrained_path: weights.pt}}"
            )
        key = f"image-backbone:{bb}:{dims}:{size}"
        if key not in self.ctx.memo:
            spec = InputSpec(kind="imaging", spatial_dims=dims, in_channels=1, image_size=size)
            with torch.random.fork_rng():  # same weights every time without pretrained ones
                torch.manual_seed(0)
                net = ENCODERS.get(bb["name"]).from_spec(
                    spec, bb["out_dim"], **bb.get("options", {})
                )
            self.ctx.memo[key] = net.eval()
        return self.ctx.memo[key]

    def _backbone_facts(self, dims: int, size: tuple[int, ...]) -> dict[str, Any]:
        """What the embedding cache key needs of the backbone (built here), for :meth:`state`."""
        key = f"image-backbone-facts:{self.ctx.frozen_image_encoder}:{dims}:{size}"
        if key not in self.ctx.memo:
            from multimodal.encoders.imaging import weights_fingerprint

            net = self._backbone(dims, size)
            self.ctx.memo[key] = {
                "encoder": type(net).__name__,
                "fingerprint": weights_fingerprint(net),
                "out_dim": int(net.out_dim),
                "spatial_dims": int(dims),
                "image_size": list(size),
                "config": self.ctx.frozen_image_encoder,
                "pretrained": _pretrained_stamp(self.ctx.frozen_image_encoder),
            }
        return self.ctx.memo[key]

    def _recorded_facts(self, dims: int, size: tuple[int, ...]) -> dict[str, Any] | None:
        """The backbone facts saved at training when they still describe the backbone the
        config builds (same config and geometry, same ``pretrained_path`` file), else None."""
        facts = getattr(self, "backbone_", None)
        bb = self.ctx.frozen_image_encoder
        if not facts or not bb:
            return None
        same = (
            facts.get("spatial_dims") == dims
            and tuple(facts.get("image_size") or ()) == tuple(size)
            and _canonical(facts.get("config")) == _canonical(bb)
            # new weights in the file: a fingerprint of the old ones would find stale embeddings
            and facts.get("pretrained") == _pretrained_stamp(bb)
        )
        return facts if same else None

    def _geometry(self, source: Any) -> tuple[int, tuple[int, ...]]:
        dims = int(getattr(source, "spatial_dims", 3) or 3)
        return dims, (self.ctx.image_size,) * dims

    def _embedded(self, source: Any, ids: list[str]) -> DenseStore:
        """Frozen-backbone embeddings as stored (not standardised); zero rows where missing.

        The backbone is built only when an embedding is not cached under the recorded facts.
        """
        from multimodal.encoders.imaging import (
            cached_image_embeddings,
            precompute_image_embeddings,
        )

        dims, size = self._geometry(source)
        present, paths = self._paths(source, ids)
        facts = self._recorded_facts(dims, size)
        # embeddings read once per run: fit and every fold's transforms reuse them (as the text
        # pipeline does its sentence embeddings)
        key = f"image-embeddings:{self.ctx.frozen_image_encoder}:{dims}:{size}"
        memo: dict[str, np.ndarray] = self.ctx.memo.setdefault(
            f"{key}:{self.ctx.image_intensity}", {}
        )
        todo = list(dict.fromkeys(p for p in paths if p not in memo))
        cache = (self.ctx.cache_dir or default_cache_dir()) / "images"
        if todo and facts is not None:
            found = cached_image_embeddings(
                todo,
                cache,
                facts["fingerprint"],
                facts["encoder"],
                dims,
                size,
                normalize=self.ctx.image_intensity,
            )
            memo.update((p, e) for p, e in zip(todo, found) if e is not None)
            todo = [p for p, e in zip(todo, found) if e is None]
        if todo:
            backbone = self._backbone(dims, size)
            built = self._backbone_facts(dims, size)
            if facts is not None and built["fingerprint"] != facts["fingerprint"]:
                log.warning(
                    "the frozen image backbone data.frozen_image_encoder now has other weights "
                    "than when this model was trained; %d image(s) not in the embedding cache are "
                    "embedded with the new weights",
                    len(todo),
                )
            owners = {p: pid for pid, p in zip([i for i, q in zip(ids, present) if q], paths)}
            emb = _for_patient(
                source,
                owners,
                lambda: precompute_image_embeddings(
                    backbone,
                    todo,
                    cache,
                    spatial_dims=dims,
                    image_size=size,
                    weights_hash=built["fingerprint"],
                    normalize=self.ctx.image_intensity,
                ),
            )
            memo.update(zip(todo, emb))
            facts = facts or built
        out_dim = int(facts["out_dim"] if facts else self._backbone_facts(dims, size)["out_dim"])
        x = np.zeros((len(ids), out_dim), dtype=np.float32)
        if len(paths):
            x[present] = np.stack([memo[p] for p in paths])
        spec = InputSpec(kind="imaging", in_features=x.shape[1], spatial_dims=dims, image_size=size)
        return DenseStore(spec=spec, present=present, values=torch.from_numpy(x))

    def state(self) -> dict[str, Any]:
        return {
            "image_size": self.ctx.image_size,
            "image_intensity": self.ctx.image_intensity,
            "frozen_image_encoder": self.ctx.frozen_image_encoder,
            "mean": None if getattr(self, "mean_", None) is None else self.mean_.tolist(),
            "std": None if getattr(self, "mean_", None) is None else self.std_.tolist(),
            "backbone": getattr(self, "backbone_", None),
        }

    def load_state(self, state: dict[str, Any]) -> ImagingPipeline:
        # runs saved before standardisation was added have no "mean": their embeddings stay raw
        self.mean_, self.std_ = _saved_stats(state, np.float64)
        # runs saved before the backbone facts were recorded build the backbone for the cache key
        self.backbone_ = state.get("backbone")
        return self


def _canonical(value: Any) -> str:
    """A JSON-stable form of a config dict: tuples and lists alike, as after a save and reload."""
    return json.dumps(value, sort_keys=True, default=str)


def _pretrained_stamp(frozen: dict[str, Any] | None) -> dict[str, Any] | None:
    """Size and mtime of the frozen backbone's ``options.pretrained_path``; None without one."""
    path = ((frozen or {}).get("options") or {}).get("pretrained_path")
    if path is None:
        return None
    from multimodal.encoders.imaging import _file_stamp

    try:
        return {"path": str(path), **_file_stamp(Path(path))}
    except OSError:  # missing: never equal to the recorded stamp, so the build reports it
        return {"path": str(path), "missing": True}


def _where(source: Any) -> str:
    """``images.csv column 'path' (modality 'ct')``: where a modality's files are named."""
    table = source.path.name if getattr(source, "path", None) is not None else "the index table"
    return f"{table} column 'path' (modality {source.name!r})"


def _for_patient(source: Any, owner: str | dict[str, str], load: Any) -> Any:
    """``load()``, with the table, column and patient added to a DataError about a file.

    ``owner`` is the patient, or a dict file path -> patient (the patient is found by the path
    the error names).
    """
    from multimodal.exceptions import DataError

    try:
        return load()
    except DataError as exc:
        text = str(exc)
        if isinstance(owner, dict):
            owner = next((pid for path, pid in owner.items() if path in text), None)
        if owner is None:
            raise
        raise DataError(f"{_where(source)}, patient {owner}: {text}") from None


def _check_same_shape(source: Any, loaded: dict[str, tuple[str, Any]], what: str, how: str) -> None:
    """One shape for every file of a modality (the most common one), else a DataError naming the
    first patient whose file differs."""
    from multimodal.exceptions import DataError

    shapes = {pid: tuple(x.shape) for pid, (_, x) in loaded.items()}
    if len(set(shapes.values())) < 2:
        return
    common = pd.Series([str(s) for s in shapes.values()]).mode().iloc[0]
    pid, shape = next((p, s) for p, s in shapes.items() if str(s) != common)
    raise DataError(
        f"{_where(source)}, patient {pid}: {what} {loaded[pid][0]} {how} {shape}, the modality's "
        f"other {what}s as {common}; give every patient {what}s with the same number of channels"
    )


@PIPELINES.register("feature_bag")
class FeatureBagPipeline(ModalityPipeline):
    """Bags of precomputed patch/slide features; several files per patient are concatenated."""

    kind = "feature_bag"

    def transform(self, source: Any, ids: list[str]) -> TokenStore:
        from multimodal.encoders.bags import load_feature_bag
        from multimodal.exceptions import DataError

        table = source.table
        by_patient = table.groupby("patient_id")["path"].apply(list).to_dict()
        present = np.asarray([i in by_patient for i in ids], dtype=bool)
        files: dict[tuple[str, str], torch.Tensor] = {}
        for pid in ids:
            for path in by_patient.get(pid, []):
                key = f"bag:{path}"
                if key not in self.ctx.memo:
                    self.ctx.memo[key] = _for_patient(
                        source, pid, lambda path=path: load_feature_bag(path).float()
                    )
                files[(pid, path)] = self.ctx.memo[key]
        # every bag of the modality (and of the training fold, for later transforms) has one D
        dims = {k: int(x.shape[1]) for k, x in files.items()}
        dim = getattr(self, "dim_", None) or (
            pd.Series(list(dims.values())).mode().iloc[0] if dims else None
        )
        bad = [(k, d) for k, d in dims.items() if d != dim]
        if bad:
            (pid, path), d = bad[0]
            more = f" (and {len(bad) - 1} more bag(s))" if len(bad) > 1 else ""
            raise DataError(
                f"{_where(source)}, patient {pid}: feature bag {path} has feature dimension {d} "
                f"(shape {tuple(files[(pid, path)].shape)}) but the modality's other bags have "
                f"{dim}{more}; every bag of a modality needs the same feature extractor"
            )
        self.dim_ = dim = int(dim or 1)
        bags = []
        for pid in ids:
            parts = [files[(pid, path)] for path in by_patient.get(pid, [])]
            bags.append(torch.cat(parts) if parts else None)
        bags = [b if b is not None else torch.zeros(0, dim) for b in bags]
        spec = InputSpec(kind="feature_bag", in_features=dim, tokens=True)
        return TokenStore(spec=spec, present=present, values=bags)
