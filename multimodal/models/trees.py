"""Survival tree ensembles as plain arrays, evaluated by our own numpy and torch code.

A tree member of a model is a scikit-survival tree ensemble fitted on the training patients
(:func:`fit_tree_ensemble`): gradient-boosted Cox trees (``"boosting"``,
:class:`sksurv.ensemble.GradientBoostingSurvivalAnalysis`) or a random survival forest
(``"forest"``, :class:`sksurv.ensemble.RandomSurvivalForest`). Run folders never unpickle
anything, so the fitted estimator is exported to a :class:`TreeEnsemble` of numpy arrays (every
tree's nodes concatenated) whose risk score is

``init + scale * sum over trees t of value[leaf_t(x)]``

and reproduces the estimator's ``predict(x)`` (risk: higher = earlier event). In a model the
ensemble lives in a :class:`TreeMember`, whose buffers save to and load from safetensors and
whose forward pass walks every tree at once on the device of its buffers.

Splits follow scikit-learn exactly: the input is cast to float32 first, a sample goes left when
``float32(x[feature]) <= threshold`` (the float64 threshold), and a missing value (NaN) goes to
the side the fitted tree chose for it (``missing_left``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from multimodal.exceptions import ConfigError, DataError
from multimodal.registry import did_you_mean

__all__ = [
    "TREE_DEFAULTS",
    "TREE_KINDS",
    "SizedByState",
    "TreeEnsemble",
    "TreeKind",
    "TreeMember",
    "fit_tree_ensemble",
]

TreeKind = Literal["boosting", "forest"]

#: Tree-ensemble kinds a model may hold.
TREE_KINDS: tuple[str, ...] = ("boosting", "forest")

#: Fixed hyper-parameters per kind, chosen a priori for 150-1000 patients and ~20-100 features
#: (never tuned on survival data); ``options`` of :func:`fit_tree_ensemble` override them.
TREE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Stochastic gradient boosting of the Cox partial likelihood (Friedman 2002; Ridgeway's gbm
    # for Cox). A small step (0.05) times 200 stages keeps the total shrinkage moderate; depth-2
    # trees (4 leaves) model main effects and pairwise interactions, which is what a few hundred
    # patients can support; subsample 0.8 and "sqrt" features per split decorrelate the stages
    # and regularise when most of the 20-100 features are noise; leaves of >= 10 patients keep
    # each leaf's gradient step from resting on one or two patients. About 0.2 s (n=300) to
    # 0.6 s (n=800) per fit at p=60 on one thread.
    "boosting": {
        "loss": "coxph",
        "learning_rate": 0.05,
        "n_estimators": 200,
        "max_depth": 2,
        "subsample": 0.8,
        "min_samples_leaf": 10,
        "max_features": "sqrt",
    },
    # Ishwaran's random survival forest with the usual "sqrt" features per split and bootstrap
    # samples. Leaves of >= 15 patients hold ~5-8 events at the event rates of cancer cohorts,
    # enough for a stable Nelson-Aalen estimate per leaf. low_memory keeps one number per node
    # (the risk score) instead of the whole cumulative hazard (nodes x unique times x 2 doubles);
    # the trees and predict() are the same, and fitting is not slower. n_jobs=1: callers
    # parallelise over folds and trials, and one thread keeps fits reproducible and cheap.
    # max_samples 0.5 (each tree on a half-size bootstrap sample) halves the fit time at n=800
    # (9 -> 4 s) at no measurable cost (paired C +0.0006 +- 0.005 on a synthetic check, 5 seeds).
    "forest": {
        "n_estimators": 200,
        "min_samples_leaf": 15,
        "max_features": "sqrt",
        "max_samples": 0.5,
        "low_memory": True,
        "n_jobs": 1,
    },
}

#: Estimator arguments that ``options`` may not set, and why.
_FIXED_OPTIONS = {
    "random_state": "it is set from the seed argument of fit_tree_ensemble",
    "warm_start": "every member is fitted from scratch",
}


@dataclass
class TreeEnsemble:
    """A fitted tree ensemble as arrays, every tree's nodes concatenated.

    Attributes
    ----------
    feature : (n_nodes,) int64, the feature a node splits on; -1 at leaves.
    threshold : (n_nodes,) float64; go left when ``float32(x[feature]) <= threshold``.
    left, right : (n_nodes,) int64 global node indices of the children; -1 at leaves.
    value : (n_nodes,) float64 leaf output; 0 at internal nodes.
    missing_left : (n_nodes,) bool, where a missing value (NaN) goes at a split.
    roots : (n_trees,) int64 global index of each tree's root.
    init, scale : the score is ``init + scale * sum over trees of value[leaf]``.
    max_depth : edges on the longest root-to-leaf path of any tree.
    n_features : number of input columns the ensemble was fitted on.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    missing_left: np.ndarray
    roots: np.ndarray
    init: float
    scale: float
    max_depth: int
    n_features: int

    def __post_init__(self) -> None:
        self.feature = np.ascontiguousarray(self.feature, dtype=np.int64)
        self.threshold = np.ascontiguousarray(self.threshold, dtype=np.float64)
        self.left = np.ascontiguousarray(self.left, dtype=np.int64)
        self.right = np.ascontiguousarray(self.right, dtype=np.int64)
        self.value = np.ascontiguousarray(self.value, dtype=np.float64)
        self.missing_left = np.ascontiguousarray(self.missing_left, dtype=bool)
        self.roots = np.ascontiguousarray(self.roots, dtype=np.int64)
        self.init, self.scale = float(self.init), float(self.scale)
        self.max_depth, self.n_features = int(self.max_depth), int(self.n_features)
        _check_ensemble(self)

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return len(self.roots)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every field as a numpy array (scalars 0-d), for ``np.savez`` or safetensors."""
        return {f.name: np.asarray(getattr(self, f.name)).copy() for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> TreeEnsemble:
        """The ensemble saved by :meth:`to_arrays` (numpy arrays or tensors)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise DataError(
                f"tree ensemble arrays lack {missing} (found {sorted(arrays)}); save them with "
                "TreeEnsemble.to_arrays()"
            )
        values = {n: np.asarray(arrays[n]) for n in names}
        scalars = ("init", "scale", "max_depth", "n_features")
        return cls(**{n: (values[n].item() if n in scalars else values[n]) for n in names})

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(n, n_trees) int64 global index of the leaf each patient reaches in each tree.

        ``x`` : (n, n_features) float, cast to float32 as scikit-learn does before splitting.
        """
        x32 = _check_predict_input(x, self.n_features)
        node = np.broadcast_to(self.roots, (x32.shape[0], self.n_trees)).copy()
        rows = np.arange(x32.shape[0])[:, None]
        for _ in range(self.max_depth):
            left = self.left[node]
            xv = x32[rows, np.maximum(self.feature[node], 0)].astype(np.float64)
            go_left = np.where(np.isnan(xv), self.missing_left[node], xv <= self.threshold[node])
            node = np.where(left >= 0, np.where(go_left, left, self.right[node]), node)
        return node

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        """(n,) float64 risk score (higher = earlier event), as the sksurv estimator's predict.

        ``x`` : (n, n_features) float; NaN goes where the fitted tree sends missing values.
        """
        if self.n_trees == 0:
            return np.full(np.shape(x)[0], self.init)
        leaves = self.apply(x)
        return self.init + self.scale * self.value[leaves].sum(axis=1)


def _check_ensemble(ens: TreeEnsemble) -> None:
    """Raise :class:`DataError` unless the arrays describe valid trees."""
    n = len(ens.feature)
    for name in ("feature", "threshold", "left", "right", "value", "missing_left"):
        arr = getattr(ens, name)
        if arr.shape != (n,):
            raise DataError(
                f"tree ensemble: {name} has shape {arr.shape}, expected ({n},) like feature"
            )
    if ens.roots.ndim != 1:
        raise DataError(f"tree ensemble: roots has shape {ens.roots.shape}, expected (n_trees,)")
    for name in ("left", "right", "roots"):
        arr = getattr(ens, name)
        if arr.size and (arr.max() >= n or arr.min() < (0 if name == "roots" else -1)):
            raise DataError(f"tree ensemble: {name} holds node indices outside [0, {n})")
    leaf = ens.left < 0
    if not np.array_equal(leaf, ens.right < 0) or np.any(ens.feature[~leaf] < 0):
        raise DataError("tree ensemble: a node has only one child or splits on feature -1")
    if np.any(ens.feature >= ens.n_features):
        raise DataError(
            f"tree ensemble: a split uses feature {int(ens.feature.max())} but n_features is "
            f"{ens.n_features}"
        )
    depth = _depth(ens.left, ens.right, ens.roots)
    if ens.max_depth != depth:
        raise DataError(
            f"tree ensemble: max_depth is {ens.max_depth} but its trees are {depth} deep"
        )


def _depth(left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> int:
    """Edges on the longest root-to-leaf path; :class:`DataError` if the links form a cycle."""
    frontier, depth = roots, 0
    while True:
        frontier = frontier[left[frontier] >= 0]
        if frontier.size == 0:
            return depth
        frontier = np.unique(np.concatenate([left[frontier], right[frontier]]))
        depth += 1
        if depth > len(left):
            raise DataError("tree ensemble: the child links form a cycle")


def _check_predict_input(x: Any, n_features: int) -> np.ndarray:
    """``x`` as a (n, n_features) float32 array (scikit-learn's split dtype)."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise DataError(
            f"tree ensemble input has shape {arr.shape}; it needs (n_patients, {n_features}), "
            "the columns it was fitted on"
        )
    return arr.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# fitting and export


def fit_tree_ensemble(
    kind: TreeKind,
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> TreeEnsemble:
    """Fit a sksurv tree ensemble of ``kind`` and export it.

    Parameters
    ----------
    kind : ``"boosting"`` (gradient-boosted Cox trees) or ``"forest"`` (random survival forest).
    x : (n, p) float features; NaN is allowed for ``"forest"`` only (sksurv's trees learn where
        missing values go), infinities never.
    time : (n,) float >= 0, time of event or censoring.
    event : (n,) bool, True = event observed.
    seed : random state of the estimator (bootstrap, subsamples, features per split).
    options : estimator arguments overriding :data:`TREE_DEFAULTS` ``[kind]``.

    Returns
    -------
    TreeEnsemble whose :meth:`~TreeEnsemble.predict_numpy` equals the estimator's ``predict``.
    """
    kind = _resolve_kind(kind)
    x, time, event = _check_training_data(kind, x, time, event)
    estimator = _make_estimator(kind, seed, options)
    from sksurv.util import Surv  # sksurv/sklearn take ~1 s to import: only when fitting

    estimator.fit(x, Surv.from_arrays(event=event, time=time))
    return _export_boosting(estimator) if kind == "boosting" else _export_forest(estimator)


def _resolve_kind(kind: str) -> str:
    if kind not in TREE_KINDS:
        raise ConfigError(
            f"unknown tree kind {kind!r}.{did_you_mean(kind, TREE_KINDS)} "
            f"Available: {', '.join(TREE_KINDS)}"
        )
    return kind


def _check_training_data(
    kind: str, x: Any, time: Any, event: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(x, time, event)`` as float64 / float64 / bool arrays."""
    x = np.asarray(x, dtype=np.float64)
    time, event = np.asarray(time, dtype=np.float64), np.asarray(event)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DataError(f"tree ensemble: x has shape {x.shape}; it needs (n_patients >= 2, p)")
    if time.shape != (x.shape[0],) or event.shape != (x.shape[0],):
        raise DataError(
            f"tree ensemble: time {time.shape} and event {event.shape} must both have shape "
            f"({x.shape[0]},), one entry per row of x"
        )
    if not np.all(np.isfinite(time)) or np.any(time < 0):
        row = int(np.flatnonzero(~(np.isfinite(time) & (time >= 0)))[0])
        raise DataError(f"tree ensemble: time[{row}] is {time[row]}; times must be finite >= 0")
    if not np.all(np.isin(event, (0, 1))):
        raise DataError("tree ensemble: event must be boolean (True = event observed)")
    event = event.astype(bool)
    if not event.any():
        raise DataError("tree ensemble: no patient has an event; a survival model needs one")
    bad = np.isinf(x) | (np.isnan(x) if kind == "boosting" else False)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(
            f"tree ensemble ({kind}): x[{row}, {col}] is {x[row, col]}; impute missing values "
            "and replace infinities before fitting"
            + (" (or use kind='forest', which accepts NaN)" if kind == "boosting" else "")
        )
    return x, time, event


def _make_estimator(kind: str, seed: int, options: dict[str, Any] | None) -> Any:
    """The unfitted sksurv estimator with the defaults, ``options`` and ``seed``."""
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest

    cls = GradientBoostingSurvivalAnalysis if kind == "boosting" else RandomSurvivalForest
    params = {**TREE_DEFAULTS[kind], **(options or {})}
    allowed = set(cls().get_params()) - set(_FIXED_OPTIONS)
    for name in params:
        if name in _FIXED_OPTIONS:
            raise ConfigError(
                f"tree option {name!r} of {kind!r} cannot be set: {_FIXED_OPTIONS[name]}"
            )
        if name not in allowed:
            raise ConfigError(
                f"unknown tree option {name!r} for {kind!r} ({cls.__name__}).{did_you_mean(name, allowed)} "
                f"Available: {', '.join(sorted(allowed))}"
            )
    if params.get("loss", "coxph") != "coxph":
        raise ConfigError(
            f"tree option loss={params['loss']!r}: only 'coxph' gives a risk score (the other "
            "losses predict a survival time); remove the option"
        )
    return cls(**params, random_state=int(seed))


def _concat_trees(trees: list[Any], leaf_values: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Node arrays of sklearn ``Tree`` objects concatenated, children as global indices."""
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "threshold", "left", "right", "value", "missing_left")
    }
    roots, offset = [], 0
    for tree, leaf_value in zip(trees, leaf_values, strict=True):
        left, right = tree.children_left.astype(np.int64), tree.children_right.astype(np.int64)
        leaf = left < 0
        parts["feature"].append(np.where(leaf, -1, tree.feature).astype(np.int64))
        parts["threshold"].append(np.asarray(tree.threshold, dtype=np.float64))
        parts["left"].append(np.where(leaf, -1, left + offset))
        parts["right"].append(np.where(leaf, -1, right + offset))
        parts["value"].append(np.where(leaf, leaf_value, 0.0))
        parts["missing_left"].append(np.asarray(tree.missing_go_to_left, dtype=bool))
        roots.append(offset)
        offset += tree.node_count
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    arrays["roots"] = np.asarray(roots, dtype=np.int64)
    arrays["max_depth"] = max((int(t.max_depth) for t in trees), default=0)
    return arrays


def _export_boosting(model: Any) -> TreeEnsemble:
    """``GradientBoostingSurvivalAnalysis(loss="coxph")``: ``predict = learning_rate * sum of the
    trees' leaf values`` (its init estimator is "zero"; with dropout, tree ``i`` is further
    scaled by ``model._scale[i]``, folded into its leaf values here)."""
    if getattr(model, "init_", "zero") != "zero":
        raise ConfigError(f"boosting with init estimator {model.init_!r} cannot be exported")
    trees = [est.tree_ for est in model.estimators_[:, 0]]
    per_tree = getattr(model, "_scale", np.ones(len(trees)))
    values = [t.value[:, 0, 0] * float(s) for t, s in zip(trees, per_tree, strict=True)]
    arrays = _concat_trees(trees, values)
    return TreeEnsemble(
        **arrays, init=0.0, scale=float(model.learning_rate), n_features=int(model.n_features_in_)
    )


def _export_forest(model: Any) -> TreeEnsemble:
    """``RandomSurvivalForest``: ``predict = mean over trees`` of each tree's risk score, the sum
    of its leaf's cumulative hazard over the training event times (stored as that sum in
    low-memory mode)."""
    trees, values = [], []
    for est in model.estimators_:
        trees.append(est.tree_)
        if est.low_memory:
            values.append(est.tree_.value[:, 0, 0])
        else:  # value[node, time, 0] is the cumulative hazard at unique_times_ (censorings too)
            values.append(est.tree_.value[:, est.is_event_time_, 0].sum(axis=1))
    arrays = _concat_trees(trees, values)
    return TreeEnsemble(
        **arrays, init=0.0, scale=1.0 / len(trees), n_features=int(model.n_features_in_)
    )


# ---------------------------------------------------------------------------------------------
# torch member


def _float32_floor(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold.

    For a float32 ``v``, ``v <= t`` holds exactly when ``v <= floor32(t)``, so comparing in
    float32 against these gives scikit-learn's float32-vs-float64 comparison bit for bit, and
    survives ``module.float()``."""
    t32 = threshold.astype(np.float32)
    above = t32.astype(np.float64) > threshold
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


class SizedByState(nn.Module):
    """A module whose buffers take the shapes of the tensors it loads.

    Fitted sizes (trees, nodes, chosen columns) are unknown when a model is built from its
    config, so such buffers start empty and are resized to the saved tensors before the usual
    loading copies them in.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name, buf in list(self._buffers.items()):
            saved = state_dict.get(prefix + name)
            if buf is not None and saved is not None and tuple(saved.shape) != tuple(buf.shape):
                self._buffers[name] = torch.zeros(saved.shape, dtype=buf.dtype, device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class TreeMember(SizedByState):
    """A fixed tree-ensemble term of a model: ``forward(x) = (raw(x) - center) / spread``.

    Built empty (zero-size buffers; ``forward`` returns zeros) and filled by
    :meth:`set_ensemble`; loading a state dict resizes the buffers to the saved tensors, so a
    model built without knowing the tree sizes loads its saved weights.

    Buffers: ``feature``, ``left``, ``right``, ``roots`` (int64), ``threshold`` (float32: the
    largest float32 <= sklearn's float64 threshold, which splits float32 inputs exactly as
    sklearn does), ``value`` (float64), ``missing_left`` (bool), ``init_scale`` (2,) float64,
    ``center`` and ``spread`` (float64 scalars), ``depth`` and ``n_features`` (int64 scalars).
    Keep the module in float32 or float64 (``.half()`` would round the thresholds).
    """

    _ARRAY_BUFFERS = ("feature", "threshold", "left", "right", "value", "missing_left", "roots")

    def __init__(self) -> None:
        super().__init__()
        empty = {
            "feature": torch.int64,
            "threshold": torch.float32,
            "left": torch.int64,
            "right": torch.int64,
            "value": torch.float64,
            "missing_left": torch.bool,
            "roots": torch.int64,
        }
        for name, dtype in empty.items():
            self.register_buffer(name, torch.zeros(0, dtype=dtype))
        self.register_buffer("init_scale", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.register_buffer("center", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("spread", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("depth", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("n_features", torch.tensor(0, dtype=torch.int64))

    @property
    def fitted(self) -> bool:
        """Whether an ensemble with at least one tree is set."""
        return self.roots.numel() > 0

    def set_ensemble(
        self, ensemble: TreeEnsemble, center: float = 0.0, spread: float = 1.0
    ) -> None:
        """Hold ``ensemble``; ``forward`` then returns ``(raw - center) / spread``.

        ``center``, ``spread`` : standardisation of the raw risk score (spread > 0).
        """
        if not (np.isfinite(center) and np.isfinite(spread) and spread > 0):
            raise DataError(
                f"TreeMember: center {center} / spread {spread}: need finite, spread > 0"
            )
        device = self.roots.device
        arrays = {name: getattr(ensemble, name) for name in self._ARRAY_BUFFERS}
        arrays["threshold"] = _float32_floor(ensemble.threshold)
        for name, arr in arrays.items():
            # a fresh contiguous tensor per buffer: safetensors refuses shared memory
            setattr(self, name, torch.tensor(np.array(arr), device=device))
        scalars = {
            "init_scale": [ensemble.init, ensemble.scale],
            "center": center,
            "spread": spread,
        }
        for name, val in scalars.items():
            setattr(self, name, torch.tensor(val, dtype=torch.float64, device=device))
        self.depth = torch.tensor(ensemble.max_depth, dtype=torch.int64, device=device)
        self.n_features = torch.tensor(ensemble.n_features, dtype=torch.int64, device=device)

    def leaves(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_trees) global leaf index of each row of ``x`` (B, n_features) in each tree."""
        depth, n_features = torch.stack([self.depth, self.n_features]).tolist()
        if x.ndim != 2 or x.shape[1] != n_features:
            raise DataError(
                f"TreeMember input has shape {tuple(x.shape)}; it needs (batch, {n_features}), "
                "the columns its ensemble was fitted on"
            )
        thr = self.threshold
        # sklearn casts inputs to float32; comparing in the threshold dtype is then exact
        xs = x.to(device=thr.device, dtype=torch.float32).to(thr.dtype)
        node = self.roots.unsqueeze(0).expand(x.shape[0], -1)
        for _ in range(depth):
            left = self.left[node]
            xv = xs.gather(1, self.feature[node].clamp(min=0))
            go_left = torch.where(torch.isnan(xv), self.missing_left[node], xv <= thr[node])
            node = torch.where(left >= 0, torch.where(go_left, left, self.right[node]), node)
        return node

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) float64 risk score of the ensemble (the sksurv estimator's predict)."""
        if not self.fitted:
            return torch.zeros(x.shape[0], dtype=torch.float64, device=self.roots.device)
        total = self.value[self.leaves(x)].sum(dim=1)
        return self.init_scale[0] + self.init_scale[1] * total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) standardised risk score (higher = worse prognosis) of ``x`` (B, n_features).

        Returns ``x``'s dtype when it is floating point (float32 otherwise); zeros when no
        ensemble is set. No gradient flows: the score is piecewise constant in ``x``.
        """
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        if not self.fitted:
            return torch.zeros(x.shape[0], dtype=out_dtype, device=x.device)
        score = (self.raw(x) - self.center) / self.spread
        return score.to(out_dtype)
