"""The preprocessed patients of one split: outcomes and one store per modality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multimodal.data.landmark import PATIENT_COLUMN
from multimodal.survival.endpoints import get_endpoint
from multimodal.training.pipeline_base import ModalityPipeline
from multimodal.training.stores import DenseStore, DictStore, ModalityStore, TokenStore
from multimodal.types import Batch, InputSpec

__all__ = ["FoldData", "build_fold_data"]


@dataclass
class FoldData:
    """Preprocessed patients of one split: outcomes plus one store per modality."""

    ids: list[str]
    time: np.ndarray
    event: np.ndarray
    stores: dict[str, ModalityStore]
    strata: np.ndarray | None = None
    outcomes: dict[str, np.ndarray] | None = None
    """Progression endpoints: ``os_time``, ``os_event``, ``pfs_time``, ``pfs_event`` and, for
    competing/multistate, ``event_type`` (see :mod:`multimodal.survival.endpoints`)."""
    groups: np.ndarray | None = None
    """The patient each row belongs to when a patient has several rows (landmark rows): inner
    splits (early stopping, the penalty's folds) keep a patient's rows together."""

    def __len__(self) -> int:
        return len(self.ids)

    def specs(self) -> dict[str, InputSpec]:
        return {m: s.spec for m, s in self.stores.items()}

    def batch(self, idx: np.ndarray) -> Batch:
        idx = np.asarray(idx, dtype=np.int64)
        o = self.outcomes or {}
        return Batch(
            patient_id=[self.ids[i] for i in idx],
            time=torch.from_numpy(self.time[idx].astype(np.float32)),
            event=torch.from_numpy(self.event[idx].astype(bool)),
            inputs={m: s.batch(idx) for m, s in self.stores.items()},
            mask={m: s.mask(idx) for m, s in self.stores.items()},
            strata=None if self.strata is None else torch.from_numpy(self.strata[idx]),
            event_type=torch.from_numpy(o["event_type"][idx]) if "event_type" in o else None,
            pfs_time=(
                torch.from_numpy(o["pfs_time"][idx].astype(np.float32)) if "pfs_time" in o else None
            ),
            pfs_event=torch.from_numpy(o["pfs_event"][idx]) if "pfs_event" in o else None,
        )

    def targets(self, names: tuple[str, ...], idx: np.ndarray | None = None) -> dict[str, Any]:
        """The outcome arrays ``names`` (Batch field names) of rows ``idx`` (default: all)."""
        sel = slice(None) if idx is None else np.asarray(idx, dtype=np.int64)
        source = {"time": self.time, "event": self.event, **(self.outcomes or {})}
        missing = [n for n in names if n not in source and n not in ("time", "event")]
        if missing:
            raise ValueError(f"the fold data has no {missing}; is the endpoint right?")
        return {n: source[n][sel] for n in names}

    def batches(self, batch_size: int) -> list[np.ndarray]:
        n = len(self.ids)
        return [np.arange(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]

    def subset(self, idx: np.ndarray) -> FoldData:
        """Rows ``idx`` (e.g. the early-stopping part of a training fold)."""
        idx = np.asarray(idx, dtype=np.int64)
        stores = {}
        for m, s in self.stores.items():
            kw = {"spec": s.spec, "present": s.present[idx]}
            if isinstance(s, TokenStore):
                stores[m] = TokenStore(**kw, values=[s.values[i] for i in idx])
            elif isinstance(s, DictStore):
                stores[m] = DictStore(**kw, values={k: v[idx] for k, v in s.values.items()})
            else:
                stores[m] = DenseStore(**kw, values=s.values[torch.from_numpy(idx)])
        return FoldData(
            ids=[self.ids[i] for i in idx],
            time=self.time[idx],
            event=self.event[idx],
            stores=stores,
            strata=None if self.strata is None else self.strata[idx],
            outcomes=None
            if self.outcomes is None
            else {k: v[idx] for k, v in self.outcomes.items()},
            groups=None if self.groups is None else self.groups[idx],
        )


def build_fold_data(
    cohort: Any,
    ids: list[str],
    pipelines: dict[str, ModalityPipeline],
    endpoint: str = "os",
) -> FoldData:
    """Transform patients ``ids`` of ``cohort`` with fitted pipelines."""
    pt = cohort.patients.loc[ids]
    time, event, outcomes = get_endpoint(endpoint).outcome_arrays(pt)
    stores = {m: p.transform(cohort.sources[m], list(ids)) for m, p in pipelines.items()}
    groups = pt[PATIENT_COLUMN].astype(str).to_numpy() if PATIENT_COLUMN in pt else None
    return FoldData(
        ids=list(ids), time=time, event=event, stores=stores, outcomes=outcomes, groups=groups
    )
