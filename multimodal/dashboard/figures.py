"""Figures of the dashboard: interactive plotly versions (hover values) and static PNG copies
drawn with matplotlib (plotly's own PNG export needs kaleido, which we do not require).

Every figure is built from a list of :class:`Curve` (or a table), so that the PNG and the
interactive figure show the same numbers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Curve",
    "bar_figure",
    "calibration_figure",
    "calibration_png",
    "curves_figure",
    "curves_png",
    "histogram_figure",
]

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class Curve:
    """One line with an optional band. ``step`` draws a Kaplan-Meier staircase."""

    name: str
    x: np.ndarray
    y: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    step: bool = False
    dash: str | None = None


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def curves_figure(
    curves: list[Curve],
    title: str = "",
    xlabel: str = "time",
    ylabel: str = "survival probability",
    vlines: dict[str, float] | None = None,
    height: int = 380,
):
    """Interactive lines with shaded bands; hover shows the values."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shape = "hv" if any(c.step for c in curves) else "linear"
    for i, c in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        line_shape = "hv" if c.step else "linear"
        if c.lower is not None and c.upper is not None:
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([c.x, c.x[::-1]]),
                    y=np.concatenate([c.upper, c.lower[::-1]]),
                    fill="toself",
                    fillcolor=_rgba(color, 0.15),
                    line={"width": 0, "shape": line_shape},
                    hoverinfo="skip",
                    showlegend=False,
                    name=f"{c.name} band",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=c.x,
                y=c.y,
                mode="lines",
                name=c.name,
                line={"color": color, "shape": line_shape, "dash": c.dash or "solid"},
                hovertemplate=f"{c.name}<br>{xlabel} %{{x:.1f}}<br>{ylabel} %{{y:.3f}}<extra></extra>",
            )
        )
    for label, x in (vlines or {}).items():
        fig.add_vline(x=x, line_dash="dot", line_color="grey", annotation_text=label)
    fig.update_layout(
        title=title,
        xaxis_title=xlabel,
        yaxis_title=ylabel,
        yaxis_range=[0, 1.02] if "probab" in ylabel or "survival" in ylabel else None,
        height=height,
        margin={"l": 40, "r": 20, "t": 50 if title else 20, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        hovermode="x unified" if shape == "linear" else "closest",
    )
    return fig


def curves_png(
    curves: list[Curve], title: str = "", xlabel: str = "time", ylabel: str = "survival probability"
) -> bytes:
    """A static PNG of the same curves (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        for i, c in enumerate(curves):
            color = PALETTE[i % len(PALETTE)]
            kw = {"where": "post"} if c.step else {}
            draw = ax.step if c.step else ax.plot
            draw(c.x, c.y, color=color, label=c.name, linestyle="--" if c.dash else "-", **kw)
            if c.lower is not None and c.upper is not None:
                ax.fill_between(
                    c.x, c.lower, c.upper, color=color, alpha=0.15, step="post" if c.step else None
                )
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if "probab" in ylabel or "survival" in ylabel:
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=8)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def calibration_figure(table: pd.DataFrame, horizon: float, unit: str = ""):
    """Predicted vs observed S(horizon) per group, with the identity line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="ideal"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=table["predicted"],
            y=table["observed"],
            mode="markers+lines",
            name="groups",
            marker={"size": 9},
            customdata=table[["n"]].to_numpy(),
            hovertemplate="predicted %{x:.3f}<br>observed (KM) %{y:.3f}<br>n %{customdata[0]}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Calibration at t = {horizon:g} {unit}".strip(),
        xaxis_title="predicted survival",
        yaxis_title="observed survival (Kaplan-Meier)",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1],
        height=380,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return fig


def calibration_png(table: pd.DataFrame, horizon: float, unit: str = "") -> bytes:
    curve = Curve("groups", table["predicted"].to_numpy(float), table["observed"].to_numpy(float))
    ideal = Curve("ideal", np.array([0.0, 1.0]), np.array([0.0, 1.0]), dash="dot")
    return curves_png(
        [curve, ideal],
        f"Calibration at t = {horizon:g} {unit}".strip(),
        "predicted survival",
        "observed survival (KM)",
    )


def histogram_figure(
    values: np.ndarray, marker: float | None = None, xlabel: str = "risk", nbins: int = 40
):
    """Distribution of ``values`` with the patient marked."""
    import plotly.graph_objects as go

    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    lo, hi = np.quantile(values, [0.01, 0.99]) if values.size else (0.0, 1.0)
    if marker is not None:  # a few extreme risks would squeeze the bulk of the cohort into one bar
        lo, hi = min(lo, marker), max(hi, marker)
    pad = 0.05 * (hi - lo or 1.0)
    fig = go.Figure(
        go.Histogram(x=np.clip(values, lo, hi), nbinsx=nbins, marker_color="#9ecae1", name="cohort")
    )
    fig.update_xaxes(range=[lo - pad, hi + pad])
    if marker is not None:
        fig.add_vline(x=marker, line_color="#d62728", line_width=3, annotation_text="this patient")
    fig.update_layout(
        xaxis_title=xlabel,
        yaxis_title="patients",
        height=260,
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        showlegend=False,
    )
    return fig


def bar_figure(
    labels: list[str],
    values: list[float],
    xlabel: str = "change in risk",
    height: int | None = None,
):
    """Horizontal bars, red = raises risk, blue = lowers it."""
    import plotly.graph_objects as go

    colors = ["#d62728" if v > 0 else "#1f77b4" for v in values]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=colors,
            hovertemplate="%{y}: %{x:+.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title=xlabel,
        height=height or max(200, 28 * len(labels) + 80),
        margin={"l": 40, "r": 20, "t": 20, "b": 40},
        yaxis={"autorange": "reversed"},
    )
    return fig
