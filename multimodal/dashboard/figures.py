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
    "trajectories_figure",
    "trajectories_png",
    "visit_risk_figure",
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
    at_risk: pd.DataFrame | None = None,
):
    """Interactive lines with shaded bands; hover shows the values.

    ``at_risk`` (rows = curve names, columns = times; :func:`cohort_stats.numbers_at_risk`) adds
    a *Number at risk* table under the plot, on the same time axis, one row per curve in its
    colour.
    """
    import plotly.graph_objects as go

    if at_risk is not None and len(at_risk):
        from plotly.subplots import make_subplots

        rows = len(at_risk)
        share = min(0.45, 0.07 * rows + 0.08)
        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            row_heights=[1 - share, share],
            vertical_spacing=0.1,
        )
        height += int(22 * rows + 40)
    else:
        fig = go.Figure()
    main = {"row": 1, "col": 1} if at_risk is not None and len(at_risk) else {}
    shape = "hv" if any(c.step for c in curves) else "linear"
    colors = {}
    for i, c in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        colors[c.name] = color
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
                ),
                **main,
            )
        fig.add_trace(
            go.Scatter(
                x=c.x,
                y=c.y,
                mode="lines",
                name=c.name,
                line={"color": color, "shape": line_shape, "dash": c.dash or "solid"},
                hovertemplate=f"{c.name}<br>{xlabel} %{{x:.1f}}<br>{ylabel} %{{y:.3f}}<extra></extra>",
            ),
            **main,
        )
    for label, x in (vlines or {}).items():
        fig.add_vline(x=x, line_dash="dot", line_color="grey", annotation_text=label, **main)
    ranged = "probab" in ylabel or "survival" in ylabel
    if main:
        _at_risk_rows(fig, at_risk, colors, xlabel)
        fig.update_yaxes(title_text=ylabel, range=[0, 1.02] if ranged else None, row=1, col=1)
    fig.update_layout(
        title=title,
        xaxis_title=None if main else xlabel,
        yaxis_title=ylabel,
        yaxis_range=[0, 1.02] if ranged else None,
        height=height,
        margin={"l": 40, "r": 20, "t": 50 if title or main else 20, "b": 40},
        legend=(
            {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"}
            if main
            else {"orientation": "h", "y": -0.2}
        ),
        hovermode="x unified" if shape == "linear" else "closest",
    )
    return fig


def _at_risk_rows(fig, at_risk: pd.DataFrame, colors: dict[str, str], xlabel: str) -> None:
    """The numbers-at-risk table as text in the second row of ``fig``."""
    import plotly.graph_objects as go

    names = [str(n) for n in at_risk.index]
    ticks = [float(t) for t in at_risk.columns]
    for j, name in enumerate(names):
        fig.add_trace(
            go.Scatter(
                x=ticks,
                y=[len(names) - j] * len(ticks),
                mode="text",
                text=[str(int(v)) for v in at_risk.loc[at_risk.index[j]].to_numpy()],
                textfont={"color": colors.get(name, "#333333"), "size": 12},
                hovertemplate=f"{name}: %{{text}} at risk at %{{x:g}}<extra></extra>",
                showlegend=False,
                name=f"{name} at risk",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(
        tickvals=list(range(len(names), 0, -1)),
        ticktext=names,
        range=[0.4, len(names) + 0.6],
        showgrid=False,
        zeroline=False,
        title_text="Number at risk",
        title_font={"size": 11},
        row=2,
        col=1,
    )
    fig.update_xaxes(tickvals=ticks, title_text=xlabel, row=2, col=1)
    fig.update_xaxes(tickvals=ticks, row=1, col=1)


def curves_png(
    curves: list[Curve],
    title: str = "",
    xlabel: str = "time",
    ylabel: str = "survival probability",
    at_risk: pd.DataFrame | None = None,
) -> bytes:
    """A static PNG of the same curves (matplotlib), with the numbers-at-risk table under the
    plot when ``at_risk`` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = at_risk is not None and len(at_risk)
    if table:
        fig, (ax, tab) = plt.subplots(
            2,
            1,
            figsize=(7, 4.6 + 0.22 * len(at_risk)),
            dpi=110,
            sharex=True,
            gridspec_kw={"height_ratios": [4, 0.35 * len(at_risk) + 0.5]},
        )
    else:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        colors = {}
        for i, c in enumerate(curves):
            color = PALETTE[i % len(PALETTE)]
            colors[c.name] = color
            kw = {"where": "post"} if c.step else {}
            draw = ax.step if c.step else ax.plot
            draw(c.x, c.y, color=color, label=c.name, linestyle="--" if c.dash else "-", **kw)
            if c.lower is not None and c.upper is not None:
                ax.fill_between(
                    c.x, c.lower, c.upper, color=color, alpha=0.15, step="post" if c.step else None
                )
        ax.set(title=title, ylabel=ylabel, xlabel="" if table else xlabel)
        if "probab" in ylabel or "survival" in ylabel:
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=8)
        if table:
            names = [str(n) for n in at_risk.index]
            for j, name in enumerate(names):
                y = len(names) - j
                for t, v in zip(at_risk.columns, at_risk.iloc[j].to_numpy()):
                    tab.text(
                        float(t),
                        y,
                        str(int(v)),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color=colors.get(name, "#333333"),
                    )
            tab.set_yticks(range(len(names), 0, -1), names, fontsize=8)
            tab.set_ylim(0.4, len(names) + 0.6)
            tab.set_xticks([float(t) for t in at_risk.columns])
            tab.set(xlabel=xlabel, title="Number at risk")
            tab.title.set_fontsize(9)
            for side in ("top", "right", "left"):
                tab.spines[side].set_visible(False)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def calibration_figure(table: pd.DataFrame, horizon_label: str):
    """Predicted vs observed survival probability at a horizon per group, with the identity line.

    ``horizon_label``: the horizon in words with its unit (``"1 year (12 months)"``).
    """
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
            hovertemplate="predicted %{x:.1%}<br>observed (Kaplan-Meier) %{y:.1%}<br>%{customdata[0]} patients<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Calibration at {horizon_label}",
        xaxis_title=f"predicted survival probability at {horizon_label}",
        yaxis_title="observed survival probability (Kaplan-Meier)",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1],
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
        height=380,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return fig


def calibration_png(table: pd.DataFrame, horizon_label: str) -> bytes:
    curve = Curve("groups", table["predicted"].to_numpy(float), table["observed"].to_numpy(float))
    ideal = Curve("ideal", np.array([0.0, 1.0]), np.array([0.0, 1.0]), dash="dot")
    return curves_png(
        [curve, ideal],
        f"Calibration at {horizon_label}",
        f"predicted survival probability at {horizon_label}",
        "observed survival probability (KM)",
    )


def histogram_figure(
    values: np.ndarray,
    marker: float | None = None,
    xlabel: str = "risk",
    nbins: int = 40,
    log: bool = False,
):
    """Distribution of ``values`` with the patient marked. ``log``: positive values (hazard
    ratios) binned on a log scale, the axis labelled in the values themselves (0.5×, 1×, 2×)."""
    import plotly.graph_objects as go

    values = np.asarray(values, float)
    values = values[np.isfinite(values) & (values > 0)] if log else values[np.isfinite(values)]
    shown = np.log10(values) if log else values
    mark = None
    if marker is not None and np.isfinite(marker) and (marker > 0 or not log):
        mark = float(np.log10(marker)) if log else float(marker)
    lo, hi = np.quantile(shown, [0.01, 0.99]) if shown.size else (0.0, 1.0)
    if mark is not None:  # a few extreme risks would squeeze the bulk of the cohort into one bar
        lo, hi = min(lo, mark), max(hi, mark)
    pad = 0.05 * (hi - lo or 1.0)
    fig = go.Figure(
        go.Histogram(
            x=np.clip(shown, lo, hi),
            nbinsx=nbins,
            marker_color="#9ecae1",
            name="cohort",
            hoverinfo="y" if log else None,
        )
    )
    fig.update_xaxes(range=[lo - pad, hi + pad])
    if log:
        candidates = np.array([1 / 16, 1 / 8, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64])
        ticks = candidates[(np.log10(candidates) >= lo - pad) & (np.log10(candidates) <= hi + pad)]
        fig.update_xaxes(tickvals=np.log10(ticks), ticktext=[f"{t:g}×" for t in ticks])
    if mark is not None:
        fig.add_vline(x=mark, line_color="#d62728", line_width=3, annotation_text="this patient")
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
    xlabel: str = "change in 3-year event probability (percentage points)",
    height: int | None = None,
    hover: str = "%{y}: %{x:+.1f} points",
):
    """Horizontal bars, red = raises the event probability (risk), blue = lowers it."""
    import plotly.graph_objects as go

    colors = ["#d62728" if v > 0 else "#1f77b4" for v in values]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=colors,
            hovertemplate=f"{hover}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title=xlabel,
        height=height or max(200, 28 * len(labels) + 80),
        margin={"l": 40, "r": 20, "t": 20, "b": 40},
        yaxis={"autorange": "reversed"},
    )
    return fig


def trajectories_figure(
    table: pd.DataFrame, unit: str, per_row: int = 3, height_per_row: int = 210
):
    """One small plot per biomarker: its values over time (``table``: time, variable, value, as
    :func:`multimodal.dashboard.landmark.measurements`), each measurement a marker; the patient's
    visits (every measurement time) are dotted vertical lines, so a visit where a variable was
    not measured shows as a line without a marker."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    variables = list(dict.fromkeys(table["variable"].astype(str)))
    per_row = max(1, min(per_row, len(variables)))
    rows = max(1, -(-len(variables) // per_row))
    fig = make_subplots(
        rows=rows,
        cols=per_row,
        subplot_titles=variables,
        horizontal_spacing=0.08,
        vertical_spacing=min(0.25, 0.6 / rows),
    )
    visits = np.unique(table["time"].to_numpy(float))
    pad = 0.03 * float(np.ptp(visits)) if visits.size > 1 else 1.0
    span = [float(visits.min()) - pad, float(visits.max()) + pad] if visits.size else None
    for i, v in enumerate(variables):
        part = table[table["variable"].astype(str) == v].sort_values("time")
        r, c = i // per_row + 1, i % per_row + 1
        fig.add_trace(
            go.Scatter(
                x=part["time"],
                y=part["value"],
                mode="lines+markers",
                name=v,
                line={"color": PALETTE[0]},
                marker={"size": 7},
                showlegend=False,
                hovertemplate=f"{v}<br>time %{{x:.2f}} {unit}<br>value %{{y:.4g}}<extra></extra>",
            ),
            row=r,
            col=c,
        )
        for t in visits:
            fig.add_vline(x=float(t), line_dash="dot", line_color="#bbbbbb", row=r, col=c)
        fig.update_xaxes(title_text=f"time ({unit})", range=span, row=r, col=c)  # one time axis
    fig.update_layout(
        height=height_per_row * rows + 40, margin={"l": 40, "r": 20, "t": 40, "b": 40}
    )
    return fig


def trajectories_png(table: pd.DataFrame, unit: str, per_row: int = 3) -> bytes:
    """A static PNG of :func:`trajectories_figure` (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variables = list(dict.fromkeys(table["variable"].astype(str)))
    per_row = max(1, min(per_row, len(variables)))
    rows = max(1, -(-len(variables) // per_row))
    fig, axes = plt.subplots(
        rows, per_row, figsize=(3.2 * per_row, 2.4 * rows), dpi=110, sharex=True, squeeze=False
    )
    try:
        visits = np.unique(table["time"].to_numpy(float))
        for i, ax in enumerate(axes.ravel()):
            if i >= len(variables):
                ax.axis("off")
                continue
            part = table[table["variable"].astype(str) == variables[i]].sort_values("time")
            for t in visits:
                ax.axvline(float(t), color="#bbbbbb", linestyle=":", linewidth=0.8)
            ax.plot(part["time"], part["value"], marker="o", color=PALETTE[0])
            ax.set_title(variables[i], fontsize=9)
            ax.set_xlabel(f"time ({unit})", fontsize=8)
            ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def visit_risk_figure(
    table: pd.DataFrame,
    unit: str,
    ylabel: str,
    last_landmark: float | None = None,
    xlabel: str = "visit time",
):
    """The predicted event probability at each visit (``table``: time, event_probability, low,
    high, as :func:`multimodal.dashboard.landmark.risk_at_visits`), with the fold models' range
    as error bars, in percent. ``last_landmark``: the last landmark the model was trained at,
    drawn as a dotted line when visits lie beyond it (predictions there extrapolate)."""
    import plotly.graph_objects as go

    t = table[np.isfinite(table["event_probability"].to_numpy(float))]
    p = 100 * t["event_probability"].to_numpy(float)
    fig = go.Figure(
        go.Scatter(  # plain lists: a few points, readable in the figure's JSON
            x=t["time"].astype(float).tolist(),
            y=p.tolist(),
            mode="lines+markers",
            name="predicted at the visit",
            line={"color": PALETTE[1]},
            marker={"size": 8},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (100 * t["high"].to_numpy(float) - p).tolist(),
                "arrayminus": (p - 100 * t["low"].to_numpy(float)).tolist(),
                "color": _rgba(PALETTE[1], 0.5),
            },
            hovertemplate=f"{xlabel} %{{x:.2f}} {unit}<br>{ylabel} %{{y:.1f}}%<extra></extra>",
        )
    )
    if last_landmark is not None and len(t) and float(t["time"].max()) > last_landmark:
        fig.add_vline(
            x=last_landmark,
            line_dash="dot",
            line_color="grey",
            annotation_text="last training landmark",
        )
    fig.update_layout(
        xaxis_title=f"{xlabel} ({unit})",
        yaxis_title=f"{ylabel} (%)",
        yaxis_range=[0, 100],
        height=320,
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        showlegend=False,
    )
    return fig
