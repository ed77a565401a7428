"""Pipeline of the longitudinal modality: repeat measurements up to each row's landmark.

Fitted on the training rows of a fold (stacked landmark rows, see :mod:`multimodal.data.landmark`):

- per variable, a log transform when its training values are positive and right-skewed
  (skewness > 1), then standardisation with the training measurements' mean and SD;
- the landmark time standardised likewise.

Each row becomes a :class:`~multimodal.training.stores.DictStore` entry:

``summary`` (F,)
    the landmark features of the classical landmark model and the linear member: per variable
    its last value, its slope over the visits up to the landmark (OLS, per unit of time; 0 with
    one visit), its baseline (first) value, the largest value so far, "never measured", and the
    time since it was last measured; then each variable's last value times the standardised
    landmark (effects that change with the landmark, as in a landmark super-model's interaction
    terms); then the standardised landmark and log(1 + visits).
    A value never measured is 0 (the training mean) with its "never measured" flag set.
``values``, ``observed`` (N, V)
    the last ``max_visits`` visits (z-scored values, 0 where not measured; observed = measured);
``before`` (N,)
    time from each visit to the landmark (>= 0, in the cohort's unit, divided by the training
    landmarks' SD); ``gap`` (N,) time since the previous visit, same scale;
``visits`` (N,)
    True for a real visit, False for padding.

The transform refuses (:class:`~multimodal.exceptions.LeakageError`) a source holding a
measurement after its row's landmark: nothing measured later reaches a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.data.landmark import check_landmarked
from multimodal.data.longitudinal import ols_slope
from multimodal.training.pipeline_base import PIPELINES, ModalityPipeline, _present
from multimodal.training.stores import DictStore
from multimodal.types import InputSpec

__all__ = ["SUMMARY_PARTS", "LongitudinalPipeline"]

#: Per-variable summary features, in the order of ``summary`` (then landmark, visits).
SUMMARY_PARTS = ("last", "slope", "first", "max", "never", "since")
_MAX_VISITS = 32


@PIPELINES.register("longitudinal")
class LongitudinalPipeline(ModalityPipeline):
    kind = "longitudinal"

    def fit(self, source: Any, train_ids: list[str]) -> LongitudinalPipeline:
        check_landmarked(source, train_ids)
        table = source.table[source.table["patient_id"].isin(set(train_ids))]
        self.variables = [v for v in source.variables if (table["variable"] == v).any()]
        self.log_vars, self.mean, self.std, self.low, self.high = [], [], [], [], []
        for v in self.variables:
            x = table.loc[table["variable"] == v, "value"].to_numpy(dtype=np.float64)
            use_log = bool(x.min() > 0 and len(x) > 2 and pd.Series(x).skew() > 1.0)
            z = np.log(x) if use_log else x
            sd = float(z.std())
            self.log_vars.append(use_log)
            self.mean.append(float(z.mean()))
            self.std.append(sd if sd > 1e-8 else 1.0)
            self.low.append(float(x.min()))
            self.high.append(float(x.max()))
        s = source.landmarks.reindex(train_ids).to_numpy(dtype=np.float64)
        self.landmark_mean = float(np.nanmean(s)) if len(s) else 0.0
        sd = float(np.nanstd(s)) if len(s) else 0.0
        self.time_scale = sd if sd > 1e-8 else 1.0
        self.max_visits = _MAX_VISITS
        return self

    # ----------------------------------------------------------------------------- transform
    def feature_names(self) -> list[str]:
        names = [f"{v} ({part})" for v in self.variables for part in SUMMARY_PARTS]
        names += [f"{v} (last x landmark)" for v in self.variables]
        return [*names, "landmark", "log(1 + visits)"]

    def _z(self, table: pd.DataFrame) -> pd.DataFrame:
        """Rows of known variables with ``z`` = transformed, standardised value."""
        index = {v: j for j, v in enumerate(self.variables)}
        table = table[table["variable"].isin(index)]
        j = table["variable"].map(index).to_numpy(dtype=np.int64)
        x = table["value"].to_numpy(dtype=np.float64)
        logged = np.asarray(self.log_vars, dtype=bool)[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(logged, np.log(np.maximum(x, 1e-12)), x)
        z = (x - np.asarray(self.mean)[j]) / np.asarray(self.std)[j]
        return pd.DataFrame(
            {
                "patient_id": table["patient_id"].to_numpy(),
                "time": table["time"].to_numpy(),
                "j": j,
                "z": np.clip(z, -10.0, 10.0),
            }
        )

    def transform(self, source: Any, ids: list[str]) -> DictStore:
        ids = [str(i) for i in ids]
        landmarks = check_landmarked(source, ids)
        present = _present(source.patient_ids, ids)
        n, n_var, n_vis = len(ids), len(self.variables), self.max_visits
        summary = np.zeros((n, n_var * (len(SUMMARY_PARTS) + 1) + 2), dtype=np.float32)
        values = np.zeros((n, n_vis, n_var), dtype=np.float32)
        observed = np.zeros((n, n_vis, n_var), dtype=bool)
        before = np.zeros((n, n_vis), dtype=np.float32)
        gap = np.zeros((n, n_vis), dtype=np.float32)
        visits = np.zeros((n, n_vis), dtype=bool)
        s_all = landmarks.to_numpy(dtype=np.float64)
        s_all = np.where(np.isfinite(s_all), s_all, self.landmark_mean)
        row_of = {pid: r for r, pid in enumerate(ids)}
        z = self._z(source.table[source.table["patient_id"].isin(row_of)])
        parts = len(SUMMARY_PARTS)
        summary[:, parts - 2 :: parts][:, :n_var] = 1.0  # "never measured" until seen
        for pid, g in z.groupby("patient_id", sort=False):
            r = row_of[pid]
            s = s_all[r]
            self._summarise(g, s, summary[r])
            times = np.unique(g["time"].to_numpy())[-n_vis:]
            k = len(times)
            pos = {t: i for i, t in enumerate(times)}
            g = g[g["time"].isin(pos)]
            i = g["time"].map(pos).to_numpy(dtype=np.int64)
            values[r, i, g["j"].to_numpy()] = g["z"].to_numpy()
            observed[r, i, g["j"].to_numpy()] = True
            before[r, :k] = (s - times) / self.time_scale
            gap[r, 1:k] = np.diff(times) / self.time_scale
            visits[r, :k] = True
            summary[r, -1] = np.log1p(k)
        summary[:, -2] = (s_all - self.landmark_mean) / self.time_scale
        # each variable's last value times the landmark: effects that change with the landmark
        last = summary[:, 0 : n_var * parts : parts]
        summary[:, n_var * parts : n_var * (parts + 1)] = last * summary[:, -2:-1]
        spec = InputSpec(
            kind="longitudinal",
            in_features=summary.shape[1],
            feature_names=self.feature_names(),
            n_variables=n_var,
        )
        store_values = {
            "summary": torch.from_numpy(summary),
            "values": torch.from_numpy(values),
            "observed": torch.from_numpy(observed),
            "before": torch.from_numpy(before),
            "gap": torch.from_numpy(gap),
            "visits": torch.from_numpy(visits),
        }
        return DictStore(spec=spec, present=present, values=store_values)

    def _summarise(self, g: pd.DataFrame, s: float, out: np.ndarray) -> None:
        """Write one row's per-variable summary features into ``out``."""
        parts = len(SUMMARY_PARTS)
        for j, h in g.groupby("j", sort=False):
            t = h["time"].to_numpy(dtype=np.float64)
            z = h["z"].to_numpy(dtype=np.float64)
            base = int(j) * parts
            out[base + 0] = z[-1]
            out[base + 1] = np.clip(ols_slope(t, z) * self.time_scale, -5.0, 5.0)
            out[base + 2] = z[0]
            out[base + 3] = z.max()
            out[base + 4] = 0.0
            out[base + 5] = (s - t[-1]) / self.time_scale

    # ----------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "variables": self.variables,
            "log_vars": self.log_vars,
            "mean": self.mean,
            "std": self.std,
            "low": self.low,
            "high": self.high,
            "landmark_mean": self.landmark_mean,
            "time_scale": self.time_scale,
            "max_visits": self.max_visits,
        }

    def load_state(self, state: dict[str, Any]) -> LongitudinalPipeline:
        self.variables = list(state["variables"])
        self.log_vars = [bool(v) for v in state["log_vars"]]
        self.mean = [float(v) for v in state["mean"]]
        self.std = [float(v) for v in state["std"]]
        self.low = [float(v) for v in state["low"]]
        self.high = [float(v) for v in state["high"]]
        self.landmark_mean = float(state["landmark_mean"])
        self.time_scale = float(state["time_scale"])
        self.max_visits = int(state["max_visits"])
        return self
