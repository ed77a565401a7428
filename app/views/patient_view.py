"""Patient view: the predicted survival curve and the evidence behind it, in one vocabulary:
event probability by 1/3/5 years, survival probability on the curves, the hazard ratio against
the cohort's median patient, effects in percentage points of the 3-year event probability."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard import cohort_stats, evidence, images, ood
from multimodal.dashboard.evidence import SHADE_MIN_POINTS
from multimodal.dashboard.figures import Curve, bar_figure, curves_figure, histogram_figure
from multimodal.dashboard.patient import (
    conditional_survival,
    horizons_for,
    oof_prediction,
    similar_patients,
)
from multimodal.dashboard.vocabulary import (
    at_risk_ticks,
    effect_sentence,
    explanation_horizon,
    fmt_pct,
    fmt_points,
    time_axis,
)

from . import patient_landmark
from .common import (
    Ctx,
    at_risk_caption,
    curve_downloads,
    get_groups,
    get_profile,
    has_explain,
    hazard_tile,
    median_tile,
    patient_evidence,
    patient_points,
    patient_saliency,
    predict_patients,
    probability_tiles,
)


def select_patient(ctx: Ctx, ids: list[str]) -> str:
    wanted = st.query_params.get("patient")
    if wanted in ids and "patient_id" not in st.session_state:
        st.session_state["patient_id"] = wanted
    pid = st.selectbox("patient", ids, key="patient_id", help="type to search by id")
    st.query_params["patient"] = pid
    return pid


def _prediction(ctx: Ctx, pid: str):
    """The fold models' curves for ``pid``: scored by the loaded model on a fine grid when the
    cohort is there, else read from ``predictions.csv`` (the run's evaluation times)."""
    run = ctx.run
    if ctx.cohort_path is not None:
        pred = predict_patients(ctx.run_dir, ctx.cohort_path, (pid,), float(run.max_time), ctx.unit)
        if not pred.refused(pid):
            return pred
        st.warning(
            "The model's input checks refuse this patient's data today "
            f"({pred.issues.get(pid, '')}); shown: the predictions saved when the run was trained."
        )
    return oof_prediction(run, [pid])


def render(ctx: Ctx) -> None:
    run = ctx.run
    st.header("Patient")
    oof = run.oof()
    ids = sorted(oof.index.astype(str))
    pid = select_patient(ctx, ids)
    if run.is_landmark:  # biomarkers, risk at each visit, the prediction from the latest visit
        pred, cohort = patient_landmark.render(ctx, pid)
        if cohort is not None:
            _availability(ctx, pid, cohort)
        if pred is not None:
            _evidence(ctx, pid, cohort, pred)
        return
    row = oof.loc[pid]
    groups = get_groups(run, ctx.run_dir, 3, run.endpoint().name)
    unit = ctx.unit
    horizons = horizons_for(unit)
    fold = int(row["fold"])
    cohort = ctx.cohort()
    pred = _prediction(ctx, pid)

    top = st.columns(4)
    top[0].metric(
        "risk group",
        str(groups.get(pid, "n/a")),
        help="tertiles of the training risks of the patient's fold model",
    )
    if run.proportional_hazards:
        hazard_tile(top[1], run, pred, pid, fold)
    top[2].metric(
        "risk percentile",
        f"{row['percentile']:.0f}%",
        help="share of the fold model's training patients with a lower predicted risk",
    )
    median_tile(top[3], pred, pid, fold, unit)
    probability_tiles(
        st.columns(len(horizons)), pred, pid, fold, horizons, unit, float(run.max_time)
    )
    outcome = f"observed: {'event' if row['event'] else 'censored'} at {row['time']:.1f} {unit}"
    st.caption(
        f"{outcome} · validation fold {fold} · numbers from the fold {fold} model, which did not "
        "train on this patient; ranges: all fold models."
    )

    _curve_section(ctx, pid, pred, oof, fold)
    _endpoints_section(ctx, pid)
    _distribution(ctx, pid, oof)
    if cohort is None:
        st.info(
            "Patient details and evidence need the cohort: start the dashboard with --cohort PATH."
        )
        return
    _availability(ctx, pid, cohort)
    _evidence(ctx, pid, cohort, pred)


def _curve_section(ctx: Ctx, pid: str, pred, oof: pd.DataFrame, fold: int) -> None:
    unit = ctx.unit
    st.subheader("Predicted survival")
    c = pred.curve(pid, fold)
    ok = np.isfinite(c["survival"].to_numpy(float))
    curves = [
        Curve(
            f"predicted (fold {fold} model, out-of-fold)",
            c["time"].to_numpy()[ok],
            c["survival"].to_numpy()[ok],
            c["lower"].to_numpy()[ok],
            c["upper"].to_numpy()[ok],
        )
    ]
    sim = similar_patients(
        oof, float(oof.loc[pid, "percentile"]), k=min(50, max(5, len(oof) // 10)), exclude=pid
    )
    times = oof.loc[sim, "time"].to_numpy(float)
    km = cohort_stats.km_curve(times, oof.loc[sim, "event"].to_numpy(bool))
    km_name = f"Kaplan-Meier of {len(sim)} similar patients"
    curves.append(
        Curve(
            km_name,
            km["time"].to_numpy(),
            km["survival"].to_numpy(),
            km["lower"].to_numpy(),
            km["upper"].to_numpy(),
            step=True,
            dash="dash",
        )
    )
    last = max(float(c["time"].to_numpy()[ok].max()), float(times.max()))
    at_risk = cohort_stats.numbers_at_risk({km_name: times}, at_risk_ticks(last, unit))
    vlines = {label: t for label, t in horizons_for(unit).items() if t <= last}
    st.plotly_chart(
        curves_figure(curves, "", time_axis(unit), vlines=vlines, at_risk=at_risk),
        width="stretch",
        key="patient_curve",
    )
    st.caption(
        "Main curve: the model of the fold where this patient was held out (the other fold models "
        "were trained on its outcome). Band: range of all fold models' curves (how much the "
        "prediction depends on the training patients), not a confidence interval. Similar "
        "patients: the out-of-fold patients closest in risk percentile, with their 95% CI."
    )
    at_risk_caption(at_risk, unit)
    frame = pd.DataFrame(
        {
            f"time ({unit})": curves[0].x,
            "survival probability": curves[0].y,
            "event probability": 1 - curves[0].y,
            "survival, fold minimum": curves[0].lower,
            "survival, fold maximum": curves[0].upper,
        }
    )
    curve_downloads(
        curves, frame, "Predicted survival", unit, "patient_survival", "patient", at_risk=at_risk
    )
    _conditional(ctx, pid, pred, fold)


def _conditional(ctx: Ctx, pid: str, pred, fold: int) -> None:
    unit = ctx.unit
    c = pred.curve(pid, fold)
    ok = np.isfinite(c["survival"].to_numpy(float))
    times = pred.times[ok]
    survived = st.number_input(
        f"Conditional survival: time already survived ({unit})",
        min_value=0.0,
        max_value=float(times.max()),
        value=0.0,
        step=6.0,
        key="survived",
    )
    if survived <= 0:
        return
    cs = conditional_survival(
        times, c.loc[ok, ["survival", "lower", "upper"]].to_numpy().T, survived
    )
    curve = Curve(
        f"given {survived:g} {unit} survived",
        cs["time"].to_numpy(),
        cs["s0"].to_numpy(),
        cs["s1"].to_numpy(),
        cs["s2"].to_numpy(),
    )
    st.plotly_chart(
        curves_figure([curve], "", f"time from now ({unit})"),
        width="stretch",
        key="conditional",
    )
    parts = [
        f"survival probability over the next {label}: "
        f"{fmt_pct(float(np.interp(t, cs['time'], cs['s0'])))}"
        for label, t in horizons_for(unit).items()
        if t <= cs["time"].max()
    ]
    st.caption(
        f"Conditional survival S(t + s) / S(s), given s = {survived:g} {unit} already survived — "
        + "; ".join(parts)
    )


def _endpoints_section(ctx: Ctx, pid: str) -> None:
    run = ctx.run
    if len(run.endpoints) < 2:
        return
    st.subheader("Progression-free and overall survival (out-of-fold)")
    curves = []
    for ep in run.endpoints:
        o = run.oof(ep.name)
        if pid not in o.index:
            continue
        times = np.asarray([0.0, *sorted(ep.surv)])
        vals = np.asarray([1.0, *[o.loc[pid, f"surv_{t:g}"] for t in sorted(ep.surv)]])
        curves.append(Curve(ep.label, times, vals))
    st.plotly_chart(
        curves_figure(curves, "", f"time ({ctx.unit})"), width="stretch", key="endpoints"
    )


def _distribution(ctx: Ctx, pid: str, oof: pd.DataFrame) -> None:
    st.subheader("Where the patient sits in the cohort")
    if ctx.run.proportional_hazards:
        fig = histogram_figure(
            oof["hazard_ratio"].to_numpy(float),
            float(oof.loc[pid, "hazard_ratio"]),
            "hazard ratio vs the cohort's median patient (out-of-fold; log scale)",
            log=True,
        )
        caption = (
            "Each patient's hazard ratio against the median patient of the fold model that "
            "scored it (out-of-fold): 2× = twice the median patient's hazard at every time."
        )
    else:
        fig = histogram_figure(
            oof["percentile"].to_numpy(float),
            float(oof.loc[pid, "percentile"]),
            "risk percentile among the training patients (%)",
        )
        caption = "Risk percentile of each patient among its fold model's training patients."
    st.plotly_chart(fig, width="stretch", key="risk_hist")
    st.caption(caption)


def _availability(ctx: Ctx, pid: str, cohort) -> None:
    st.subheader("Modalities and data checks")
    avail = cohort.availability().loc[pid]
    modalities = ctx.run.modalities or list(avail.index)
    st.dataframe(
        pd.DataFrame(
            {
                "input": [
                    "used" if bool(avail.get(m, False)) else "not used (missing)"
                    for m in modalities
                ]
            },
            index=modalities,
        ).T,
        width="content",
    )
    profile = get_profile(ctx.run_dir, ctx.cohort_path)
    clinical, genomics = {}, None
    if profile.clinical_modality in cohort.sources:
        t = cohort.sources[profile.clinical_modality].table
        if pid in t.index:
            clinical = {
                k: v for k, v in t.loc[pid].items() if k in profile.numeric or k in profile.levels
            }
    if profile.genomics_modality in cohort.sources:
        t = cohort.sources[profile.genomics_modality].table
        if pid in t.index:
            genomics = t.loc[pid]
    present = {m for m in modalities if bool(avail.get(m, False))}
    flags = ood.check_patient(profile, clinical, genomics, present)
    for f in flags:
        st.warning(f"Out of distribution — {f.message}")
    if not flags:
        st.caption("All inputs lie within what the model saw in training.")


#: Colours of the report shading: raises / lowers the event probability.
_RAISE, _LOWER = (214, 39, 40), (31, 119, 180)


def _rgba(rgb: tuple[int, int, int], alpha: float) -> str:
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.2f})"


def _highlight(text: str, spans: pd.DataFrame, col: str, fmt, threshold: float) -> str:
    """HTML of the report with each sentence shaded by its effect ``spans[col]`` (red raises the
    event probability, blue lowers it; darker = larger, relative to the largest); sentences with
    an effect below ``threshold`` in absolute value are left unshaded."""
    if spans.empty or not text:
        return html.escape(text).replace("\n", "<br>")
    scale = float(spans[col].abs().max()) or 1.0
    out, pos = [], 0
    for _, s in spans.sort_values("start").iterrows():
        start, end = int(s["start"]), int(s["end"])
        if start < pos or start < 0:
            continue
        out.append(html.escape(text[pos:start]))
        value = float(s[col])
        piece = html.escape(text[start:end])
        title = html.escape(fmt(value))
        words = evidence.sentence_terms(s, col)  # lexical report features: the words behind it
        if words:  # a line break inside the attribute (a literal one would become <br> below)
            title += "&#10;" + html.escape("words: " + "; ".join(f"{t} {fmt(v)}" for t, v in words))
        if abs(value) < threshold or not np.isfinite(value):
            out.append(f'<span title="{title}">{piece}</span>')
        else:
            a = 0.15 + 0.45 * abs(value) / scale
            color = _rgba(_RAISE if value > 0 else _LOWER, a)
            out.append(f'<span style="background:{color}" title="{title}">{piece}</span>')
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def _legend(units: _Units, threshold: float) -> str:
    """The legend of the report shading."""
    chips = [
        (_rgba(_RAISE, 0.6), f"raises the {units.what}"),
        (_rgba(_RAISE, 0.2), "slightly raises it"),
        (_rgba(_LOWER, 0.2), "slightly lowers it"),
        (_rgba(_LOWER, 0.6), f"lowers the {units.what}"),
    ]
    parts = [
        f'<span style="background:{c};padding:1px 6px;margin-right:6px">{html.escape(t)}</span>'
        for c, t in chips
    ]
    rest = (
        f"unshaded: changes it by less than {threshold:g} {units.short}. Shade relative to the "
        "largest sentence; hover a sentence for its value (with word features also the words "
        "that move it most, each removed from the sentence). Each value: the change when the "
        "sentence is replaced by a neutral (training-average) sentence; values within the fold "
        "models' own disagreement are shrunk toward zero."
    )
    return (
        '<div class="shading-legend" style="font-size:0.85em;margin:4px 0 8px 0">'
        + "".join(parts)
        + html.escape(rest)
        + "</div>"
    )


@dataclass
class _Units:
    """How the evidence is expressed: the column of the tables, axis title, formatter."""

    col: str
    axis: str
    what: str
    short: str
    threshold: float

    def fmt(self, v: float) -> str:
        if self.col == "points":
            return fmt_points(v)
        return f"{v:+.3f}"


def _units(ctx: Ctx, label: str) -> _Units:
    years = label.replace(" years", "-year").replace(" year", "-year")
    if ctx.run.proportional_hazards:
        return _Units(
            "points",
            f"change in {years} event probability (percentage points)",
            f"{years} event probability",
            "points",
            SHADE_MIN_POINTS,
        )
    return _Units(
        "attribution",
        "change in the risk score (the model's units; higher = worse, not a probability)",
        "risk score",
        "units",
        0.0,
    )


def _evidence(ctx: Ctx, pid: str, cohort, pred) -> None:
    st.subheader("What drove the prediction")
    full = st.session_state.get("full_explain_for") == pid
    c = pred.curve(pid)
    ok = np.isfinite(c["mean"].to_numpy(float))
    label, t = explanation_horizon(ctx.unit, float(pred.times[ok].max()))
    units = _units(ctx, label)
    if units.col == "points":
        s_t = float(np.interp(t, pred.times[ok], c["mean"].to_numpy(float)[ok]))
        ev = patient_points(ctx.run_dir, ctx.cohort_path, pid, full, s_t)
        st.caption(
            f"Effects in percentage points of the event probability by {label} ({t:g} "
            f"{ctx.unit}; the fold models' mean for this patient: {fmt_pct(1 - s_t)}): how much "
            "lower or higher it would be without the item's share of the risk (Cox model: "
            "S(t) becomes S(t) ** exp(−share))."
        )
    else:
        ev = patient_evidence(ctx.run_dir, ctx.cohort_path, pid, full)
    if ctx.run.is_landmark:
        st.caption(
            "Explained: the prediction from the latest visit (times count from it), with what "
            "was measured up to then."
        )
    st.caption(ev.description)
    if ev.source == "computed" and has_explain(ctx.model()):
        if st.button("Run the full explanation for this patient (slower)", key="full_explain"):
            st.session_state["full_explain_for"] = pid
            st.rerun()
    if not ev.contributions.empty:
        _contributions(ev, units, label)
    if ev.text:
        st.markdown(f"**Report** (sentences shaded by how much they change the {units.what})")
        st.markdown(_legend(units, units.threshold), unsafe_allow_html=True)
        st.markdown(
            '<div class="report" style="line-height:1.7">'
            f"{_highlight(ev.text, ev.spans, units.col, units.fmt, units.threshold)}</div>",
            unsafe_allow_html=True,
        )
    genes, pathways = st.columns(2)
    if not ev.groups.empty:
        g = ev.groups.sort_values(units.col, key=np.abs, ascending=False).head(10)
        pathways.markdown("**Pathways** (sum of their genes)")
        pathways.plotly_chart(
            _bars(list(g["group"]), list(g[units.col]), units), width="stretch", key="pathways"
        )
    if not ev.features.empty:
        f = ev.features.sort_values(units.col, key=np.abs, ascending=False).head(10)
        genes.markdown("**Top genomic and clinical features**")
        genes.plotly_chart(
            _bars(list(f["feature"]), list(f[units.col]), units), width="stretch", key="genes"
        )
    _images(ctx, pid, cohort, ev)


def _bars(labels: list[str], values: list[float], units: _Units):
    hover = "%{y}: %{x:+.1f} points" if units.col == "points" else "%{y}: %{x:+.3f}"
    return bar_figure(labels, values, units.axis, hover=hover)


def _contributions(ev, units: _Units, label: str) -> None:
    c = ev.contributions.sort_values(
        units.col if units.col in ev.contributions else "loo_delta", key=np.abs, ascending=False
    )
    col = (
        units.col if units.col in c else ("shapley" if c["shapley"].notna().all() else "loo_delta")
    )
    method = (
        "Shapley values over the modalities"
        if c.get("shapley") is not None and c["shapley"].notna().all()
        else "the change when each modality is left out"
    )
    st.markdown(f"**Modality contributions** ({method}; red raises the {units.what})")
    st.plotly_chart(_bars(list(c["modality"]), list(c[col]), units), width="stretch", key="contrib")
    if units.col == "points":
        lines = [effect_sentence(m, v, label) for m, v in zip(c["modality"], c[col])]
        st.markdown("\n".join(f"- {line}" for line in lines[:4]))


def _images(ctx: Ctx, pid: str, cohort, ev) -> None:
    imaging = [
        m for m in ctx.run.modalities if m in cohort.sources and cohort.sources[m].kind == "imaging"
    ]
    if not imaging:
        st.caption("Image saliency: not applicable — this run uses no images.")
        return
    for m in imaging:
        src = cohort.sources[m]
        if pid not in src.patient_ids:
            st.caption(f"{m}: no image for this patient, so no saliency map.")
            continue
        sal = ev.saliency.get(m)
        reason = evidence.saliency_unavailable(ctx.model(), m) if sal is None else None
        wanted = st.toggle(
            "occlusion saliency",
            value=False,
            key=f"saliency_{m}",
            disabled=reason is not None,
            help=(
                f"Not available: {reason}"
                if reason
                else "hides blocks of the image one at a time and measures the change of the "
                "prediction; about as slow as the rest of the page"
            ),
        )
        if reason is not None:
            st.info(f"Occlusion saliency for {m} is not available: {reason}")
        elif sal is None and wanted:
            sal = patient_saliency(ctx.run_dir, ctx.cohort_path, pid, m)
            if sal is None:
                st.info(f"Occlusion saliency for {m} gave no map for this patient.")
        if m in ev.saliency_images:  # the preprocessed image the saliency was computed on
            vol = images.as_volume(ev.saliency_images[m])
        else:
            try:
                vol = images.load_volume(str(src.table.loc[[pid], "path"].iloc[0]))
            except (OSError, ValueError) as exc:
                st.info(f"{m}: image not shown ({exc})")
                continue
        sal_full = images.resize_map(sal, vol.shape) if sal is not None else None
        st.markdown(
            f"**{m}**"
            + (
                " with occlusion saliency (red: the region raises the predicted risk, blue: "
                "lowers it; strength relative to the strongest block)"
                if sal is not None
                else ""
            )
        )
        planes = list(images.PLANES) if vol.shape[2] > 1 else ["axial"]
        cols = st.columns(len(planes))
        for col, plane in zip(cols, planes):
            axis = images.PLANES[plane] if vol.shape[2] > 1 else 2
            n = vol.shape[axis]
            idx = col.slider(plane, 0, n - 1, n // 2, key=f"slice_{m}_{plane}") if n > 1 else 0
            img = images.slice_of(vol, plane, idx)
            ov = images.slice_of(sal_full, plane, idx) if sal_full is not None else None
            col.image(images.overlay(img, ov), caption=f"{plane} slice {idx}", width="stretch")
