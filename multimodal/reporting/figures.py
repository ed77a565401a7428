"""Figures of the run report, drawn with matplotlib (no pyplot state) and embedded as PNG data
URIs, so the page needs no file and no network."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["calibration_figure", "km_figure", "png_bytes", "to_data_uri"]

#: Colours of the low, intermediate and high risk groups.
GROUP_COLOURS = ("#2c7fb8", "#f0a30a", "#d7301f")


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def to_data_uri(fig: Any, dpi: int = 110) -> str:
    """``data:image/png;base64,...`` of the figure (for an ``<img src>``)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


def calibration_figure(cals: list[Any], unit: str) -> Any:
    """One panel per horizon: mean predicted event probability of each quantile group of the
    prediction against the Kaplan-Meier observed one; the diagonal is perfect calibration."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * max(len(cals), 1), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(cals), 1)))
    for ax, cal in zip(axes, cals):
        table = cal.result.table
        pred, obs = 1 - table["predicted"], 1 - table["observed"]
        top = float(max(pred.max(), obs.max(), 0.05)) * 1.1
        ax.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="perfect")
        ax.plot(pred, obs, "o-", color="#2c7fb8", label="groups of patients")
        ax.set(
            xlim=(0, top),
            ylim=(0, top),
            xlabel="predicted event probability",
            ylabel="observed (Kaplan-Meier)",
            title=f"by {cal.label}\nICI {cal.result.ici:.3f}",
        )
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return fig


def km_figure(groups: pd.DataFrame, curves: pd.DataFrame, ticks: list[float], unit: str) -> Any:
    """Kaplan-Meier curves per risk group with 95% bands, and the numbers at risk at ``ticks``
    under the plot (one row per group)."""
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(groups.sort_values("group")["label"]))
    fig = Figure(figsize=(8, 5.2), layout="constrained")
    ax, table_ax = fig.subplots(2, 1, height_ratios=[4, 1.1], sharex=True)
    for label, c in curves.groupby("label", sort=False):
        colour = GROUP_COLOURS[labels.index(label) % 3] if label in labels else None
        n = int((groups["label"] == label).sum())
        ax.step(c["time"], c["survival"], where="post", color=colour, label=f"{label} (n={n})")
        ax.fill_between(c["time"], c["ci_low"], c["ci_high"], step="post", alpha=0.15, color=colour)
    ax.set(ylim=(0, 1.02), ylabel="survival probability")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, title="predicted risk group", title_fontsize=8)
    table_ax.set_title("numbers at risk", fontsize=8, loc="left")
    table_ax.set_yticks(range(len(labels)), labels[::-1], fontsize=8)
    table_ax.set_ylim(-0.6, len(labels) - 0.4)
    for row, label in enumerate(labels[::-1]):
        times = groups.loc[groups["label"] == label, "time"].to_numpy(float)
        for x in ticks:
            table_ax.annotate(
                str(int((times >= x).sum())), (x, row), ha="center", va="center", fontsize=8
            )
    table_ax.tick_params(axis="y", length=0, pad=14)
    for side in ("top", "right", "left"):
        table_ax.spines[side].set_visible(False)
    table_ax.set_xticks(ticks)
    table_ax.set_xlabel(f"time ({unit})")
    ax.set_xlim(left=0, right=max(ticks) * 1.03 if ticks else None)
    return fig
