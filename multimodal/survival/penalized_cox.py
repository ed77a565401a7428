"""Ridge-penalised Cox regression: the estimator behind every linear member of a model.

:class:`PenalizedCox` minimises the mean negative Cox partial log-likelihood (Efron or Breslow
ties, :func:`multimodal.survival.losses.cox_nll`) plus ``penalty * ||w||^2`` by L-BFGS with a
strong-Wolfe line search, starting from zero or from a given solution (a warm start along a
penalty path: the optimum is unique, so the start changes only how fast it is reached). It is
written here rather than taken from
scikit-survival because the model's linear members need what sksurv's ``CoxPHSurvivalAnalysis``
does not offer: several blocks of covariates with a penalty each (clinical covariates beside a
genomic table), rows that may lack a block (a missing modality contributes nothing), only some
blocks free, torch tensors on the training device, and -- for heads with one Cox risk per task,
cause or transition -- the head's own joint likelihood instead of the single-risk one.
``tests/survival/test_penalized_cox.py`` checks it against sksurv on the same data.

Relation to sksurv: ``CoxPHSurvivalAnalysis(alpha=a)`` minimises ``-loglik + a/2 ||w||^2`` with
the log-likelihood summed over events, so it equals ``PenalizedCox(penalty=a / (2 * n_events))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import torch

from multimodal.survival.losses import cox_nll

__all__ = ["Blocks", "PenalizedCox", "blocks_output"]

#: Named covariate blocks: name -> (design (n, p) float, present (n,) float; 0 = block missing).
Blocks = Mapping[str, tuple[torch.Tensor, torch.Tensor]]

#: ``loss(outputs (n, n_outputs), rows) -> scalar`` over the patients ``rows``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def blocks_output(blocks: Blocks, coef: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Linear predictor of ``blocks`` under ``coef`` (name -> (n_outputs, p)): (n, n_outputs).

    A block contributes zero to the rows where it is missing.
    """
    out: Any = 0.0
    for name, (x, present) in blocks.items():
        out = out + (x @ coef[name].T) * present[:, None]
    return out


class PenalizedCox:
    """Ridge-penalised Cox model fitted by L-BFGS.

    Parameters
    ----------
    penalty : L2 penalty added to the mean negative log partial likelihood; one value for every
        block, or ``{block name: penalty}`` (blocks not named get ``default_penalty``).
    default_penalty : penalty of blocks that ``penalty`` does not name.
    ties : ``"efron"`` or ``"breslow"`` (single-risk likelihood only).
    max_iter : L-BFGS iterations.
    n_outputs : columns of the linear predictor (one per task / cause / transition of a
        multi-output head; those need ``loss``).
    loss : ``loss(outputs, rows)``, replacing the single-risk partial likelihood (a multi-output
        head's joint likelihood). Then ``time``/``event`` of :meth:`fit` are not used.

    Attributes
    ----------
    coef_ : for a plain matrix ``X``: (p,) ndarray (``n_outputs == 1``) or (n_outputs, p); for
        named blocks: dict name -> (n_outputs, p) tensor.
    loss_ : the penalised loss at the solution (inf when the fit diverged).
    n_iter_ : L-BFGS iterations the fit took.

    Examples
    --------
    >>> model = PenalizedCox(penalty=0.01).fit(X, time, event)  # doctest: +SKIP
    >>> risk = model.predict(X_new)  # higher = worse prognosis  # doctest: +SKIP
    """

    def __init__(
        self,
        penalty: float | Mapping[str, float] = 0.01,
        *,
        default_penalty: float = 0.01,
        ties: Literal["efron", "breslow"] = "efron",
        max_iter: int = 200,
        n_outputs: int = 1,
        loss: LossFn | None = None,
    ) -> None:
        if isinstance(penalty, Mapping):
            bad = {k: v for k, v in penalty.items() if not np.isfinite(v) or v < 0}
        else:
            bad = {} if np.isfinite(penalty) and penalty >= 0 else {"penalty": penalty}
        if bad:
            raise ValueError(f"penalties must be finite and >= 0; got {bad}")
        if n_outputs > 1 and loss is None:
            raise ValueError("n_outputs > 1 needs the head's joint likelihood as `loss`")
        self.penalty = penalty
        self.default_penalty = float(default_penalty)
        self.ties = ties
        self.max_iter = int(max_iter)
        self.n_outputs = int(n_outputs)
        self.loss = loss

    def _penalty_of(self, name: str) -> float:
        if isinstance(self.penalty, Mapping):
            return float(self.penalty.get(name, self.default_penalty))
        return float(self.penalty)

    def fit(
        self,
        X: Blocks | np.ndarray | torch.Tensor,
        time: Any = None,
        event: Any = None,
        *,
        rows: torch.Tensor | None = None,
        free: tuple[str, ...] | None = None,
        init: Mapping[str, torch.Tensor] | None = None,
    ) -> PenalizedCox:
        """Fit on ``rows`` of ``X`` (default all).

        Parameters
        ----------
        X : (n, p) matrix, or named blocks (:data:`Blocks`).
        time, event : (n,) follow-up time and event indicator (True = event); not needed with a
            custom ``loss``.
        rows : patients the likelihood runs over (risk sets are formed within them).
        free : blocks that are fitted; the others stay at zero (default: all).
        init : starting coefficients of some free blocks (name -> (n_outputs, p)), e.g. the
            solution under a nearby penalty; the others start at zero.
        """
        blocks, matrix = self._as_blocks(X)
        first = next(iter(blocks.values()))[0]
        n = int(first.shape[0])
        if rows is None:
            rows = torch.arange(n, device=first.device)
        loss_fn = self.loss
        if loss_fn is None:
            if time is None or event is None:
                raise ValueError("PenalizedCox.fit needs time and event (or a custom loss)")
            t = torch.as_tensor(
                np.asarray(time, dtype=np.float32) if not isinstance(time, torch.Tensor) else time,
                device=first.device,
            )
            e = torch.as_tensor(
                np.asarray(event, dtype=bool) if not isinstance(event, torch.Tensor) else event,
                device=first.device,
            )
            ties = self.ties

            def loss_fn(out: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
                return cox_nll(out[r, 0], t[r], e[r], ties=ties)

        coef = {
            name: torch.zeros(self.n_outputs, x.shape[1], dtype=x.dtype, device=x.device)
            for name, (x, _) in blocks.items()
        }
        for name, w in (init or {}).items():
            if name in coef and (free is None or name in free):
                coef[name] = w.detach().to(coef[name]).clone().reshape(coef[name].shape)
        trainable = [w for name, w in coef.items() if free is None or name in free]
        for w in trainable:
            w.requires_grad_(True)
        opt = torch.optim.LBFGS(
            trainable, lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe"
        )
        # blocks held at zero add exactly nothing: leave them out of every evaluation
        active = {name: b for name, b in blocks.items() if free is None or name in free}

        def objective() -> torch.Tensor:
            loss = loss_fn(blocks_output(active, coef), rows)
            for name, w in coef.items():
                if w.requires_grad:
                    loss = loss + self._penalty_of(name) * w.pow(2).sum()
            return loss

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = objective()
            loss.backward()
            return loss

        if trainable:
            opt.step(closure)  # returns the loss at the start, not at the solution
            with torch.no_grad():
                self.loss_ = float(objective())
            self.n_iter_ = int(opt.state[trainable[0]].get("n_iter", 0))
        else:
            self.loss_, self.n_iter_ = float("nan"), 0
        fitted = {name: w.detach() for name, w in coef.items()}
        if matrix:
            w = fitted["x"].cpu().numpy().astype(float)
            self.coef_ = w[0] if self.n_outputs == 1 else w
        else:
            self.coef_ = fitted
        return self

    @staticmethod
    def _as_blocks(X: Any) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], bool]:
        if isinstance(X, Mapping):
            return dict(X), False
        x = torch.as_tensor(
            np.asarray(X, dtype=np.float64) if not isinstance(X, torch.Tensor) else X
        )
        if x.dim() != 2:
            raise ValueError(f"X must be (n_samples, n_features); got shape {tuple(x.shape)}")
        return {"x": (x, torch.ones(x.shape[0], dtype=x.dtype, device=x.device))}, True

    def predict(self, X: Blocks | np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Linear predictor (risk, higher = worse): (n,) for a plain matrix with one output,
        else (n, n_outputs)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("PenalizedCox is not fitted; call fit(X, time, event) first")
        if isinstance(self.coef_, dict):
            blocks, _ = self._as_blocks(X)
            with torch.no_grad():
                return blocks_output(blocks, self.coef_)
        out = np.asarray(X, dtype=float) @ np.atleast_2d(self.coef_).T
        return out[:, 0] if self.n_outputs == 1 else out
