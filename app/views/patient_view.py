"""Patient view: the predicted survival curve and the evidence behind it."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard import cohort_stats, images, ood
from multimodal.dashboard.figures import Curve, bar_figure, curves_figure, histogram_figure
from multimodal.dashboard.patient import conditional_survival, horizons_for, similar_patients

from .common import (
    Ctx,
    curve_downloads,
    fmt_number,
    get_groups,
    get_profile,
    has_explain,
    patient_evidence,
    patient_saliency,
    predict_patients,
)


def select_patient(ctx: Ctx, ids: list[str]) -> str:
    wanted = st.query_params.get("patient")
    if wanted in ids and "patient_id" not in st.session_state:
        st.session_state["patient_id"] = wanted
    pid = st.selectbox("patient", ids, key="patient_id", help="type to search by id")
    st.query_params["patient"] = pid
    return pid


def render(ctx: Ctx) -> None:
    run = ctx.run
    st.header("Patient")
    oof = run.oof()
    ids = sorted(oof.index.astype(str))
    pid = select_patient(ctx, ids)
    row = oof.loc[pid]
    groups = get_groups(run, ctx.run_dir, 3, run.endpoint().name)
    unit = ctx.unit
    horizons = horizons_for(unit)

    fold = int(row["fold"])
    cohort = ctx.cohort()
    pred = None
    if cohort is not None:
        pred = predict_patients(ctx.run_dir, ctx.cohort_path, (pid,), float(run.max_time), unit)

    cols = st.columns(3 + len(horizons))
    cols[0].metric(
        "risk group",
        str(groups.get(pid, "n/a")),
        help="tertiles of the training risks of the patient's fold",
    )
    cols[1].metric(
        "risk percentile",
        f"{row['percentile']:.0f}",
        help="share of training patients with a lower predicted risk",
    )
    if pred is not None:
        med, lo, hi = pred.median(pid, fold)
        rng = "" if np.isnan(lo) else f"folds {lo:.0f}–{hi:.0f}"
        cols[2].metric(
            f"median ({unit})",
            fmt_number(med),
            rng,
            help="predicted median survival: where the curve crosses 50%",
            delta_color="off",
            delta_arrow="off",
        )
        for i, (label, t) in enumerate(horizons.items()):
            s, s_lo, s_hi = pred.at(pid, t, fold)
            beyond = " (beyond follow-up)" if t > run.max_time else ""
            cols[3 + i].metric(
                f"risk at {label}",
                f"{100 * (1 - s):.0f}%",
                f"{100 * (1 - s_hi):.0f}–{100 * (1 - s_lo):.0f}%{beyond}",
                delta_color="off",
                delta_arrow="off",
            )
    outcome = f"observed: {'event' if row['event'] else 'censored'} at {row['time']:.1f} {unit}"
    st.caption(f"{outcome} · validation fold {int(row['fold'])}")

    _curve_section(ctx, pid, pred, oof, fold)
    _endpoints_section(ctx, pid)
    _distribution(ctx, pid, oof)
    if cohort is None:
        st.info(
            "Patient details and evidence need the cohort: start the dashboard with --cohort PATH."
        )
        return
    _availability(ctx, pid, cohort)
    _evidence(ctx, pid, cohort)


def _curve_section(ctx: Ctx, pid: str, pred, oof: pd.DataFrame, fold: int) -> None:
    unit = ctx.unit
    st.subheader("Predicted survival")
    curves = []
    if pred is not None:
        c = pred.curve(pid, fold)
        curves.append(
            Curve(
                f"predicted (fold {fold} model, out-of-fold)",
                c["time"].to_numpy(),
                c["survival"].to_numpy(),
                c["lower"].to_numpy(),
                c["upper"].to_numpy(),
            )
        )
    else:
        times = np.asarray([0.0, *ctx.run.eval_times])
        vals = np.asarray([1.0, *[oof.loc[pid, f"surv_{t:g}"] for t in ctx.run.eval_times]])
        curves.append(Curve("predicted (out-of-fold)", times, vals))
    sim = similar_patients(
        oof, float(oof.loc[pid, "percentile"]), k=min(50, max(5, len(oof) // 10)), exclude=pid
    )
    km = cohort_stats.km_curve(
        oof.loc[sim, "time"].to_numpy(float), oof.loc[sim, "event"].to_numpy(bool)
    )
    curves.append(
        Curve(
            f"Kaplan-Meier of {len(sim)} similar patients",
            km["time"].to_numpy(),
            km["survival"].to_numpy(),
            km["lower"].to_numpy(),
            km["upper"].to_numpy(),
            step=True,
            dash="dash",
        )
    )
    vlines = {label: t for label, t in horizons_for(unit).items() if t <= ctx.run.max_time}
    st.plotly_chart(
        curves_figure(curves, "", f"time ({unit})", vlines=vlines),
        width="stretch",
        key="patient_curve",
    )
    st.caption(
        "Main curve: the model of the fold where this patient was held out (the other fold models "
        "were trained on its outcome). Band: range of all fold models' curves (how much the "
        "prediction depends on the training patients), not a confidence interval. Similar "
        "patients: the out-of-fold patients closest in risk percentile."
    )
    frame = pd.DataFrame({"time": curves[0].x, "survival": curves[0].y})
    if curves[0].lower is not None:
        frame["fold_min"], frame["fold_max"] = curves[0].lower, curves[0].upper
    curve_downloads(curves, frame, "Predicted survival", unit, "patient_survival", "patient")

    if pred is None:
        return
    survived = st.number_input(
        f"Conditional survival: time already survived ({unit})",
        min_value=0.0,
        max_value=float(pred.times.max()),
        value=0.0,
        step=6.0,
        key="survived",
    )
    if survived > 0:
        c = pred.curve(pid, fold)
        cs = conditional_survival(
            pred.times, c[["survival", "lower", "upper"]].to_numpy().T, survived
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
            f"{label}: {100 * float(np.interp(t, cs['time'], cs['s0'])):.0f}%"
            for label, t in horizons_for(unit).items()
            if t <= cs["time"].max()
        ]
        st.caption("Conditional survival S(t + s) / S(s) — " + ", ".join(parts))


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
    fig = histogram_figure(
        oof["risk_centered"].to_numpy(float),
        float(oof.loc[pid, "risk_centered"]),
        "predicted risk (out-of-fold, centred per fold)",
    )
    st.plotly_chart(fig, width="stretch", key="risk_hist")


def _availability(ctx: Ctx, pid: str, cohort) -> None:
    st.subheader("Modalities and data checks")
    avail = cohort.availability().loc[pid]
    modalities = ctx.run.modalities or list(avail.index)
    st.dataframe(
        pd.DataFrame(
            {"available": [bool(avail.get(m, False)) for m in modalities]}, index=modalities
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


def _highlight(text: str, spans: pd.DataFrame) -> str:
    """HTML of the report with each sentence shaded by its attribution (red raises risk)."""
    if spans.empty or not text:
        return html.escape(text).replace("\n", "<br>")
    scale = float(spans["attribution"].abs().max()) or 1.0
    out, pos = [], 0
    for _, s in spans.sort_values("start").iterrows():
        start, end = int(s["start"]), int(s["end"])
        if start < pos or start < 0:
            continue
        out.append(html.escape(text[pos:start]))
        a = float(s["attribution"]) / scale
        color = f"rgba(214,39,40,{0.55 * a:.2f})" if a > 0 else f"rgba(31,119,180,{0.55 * -a:.2f})"
        out.append(
            f'<span style="background:{color}" title="{s["attribution"]:+.3f}">{html.escape(text[start:end])}</span>'
        )
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def _evidence(ctx: Ctx, pid: str, cohort) -> None:
    st.subheader("What drove the prediction")
    full = st.session_state.get("full_explain_for") == pid
    ev = patient_evidence(ctx.run_dir, ctx.cohort_path, pid, full)
    st.caption(ev.description)
    if ev.source == "computed" and has_explain(ctx.model()):
        if st.button("Run the full explanation for this patient (slower)", key="full_explain"):
            st.session_state["full_explain_for"] = pid
            st.rerun()
    if not ev.contributions.empty:
        col = "shapley" if ev.contributions["shapley"].notna().all() else "loo_delta"
        c = ev.contributions.sort_values(col, key=np.abs, ascending=False)
        st.markdown("**Modality contributions** (change in risk; red raises it)")
        st.plotly_chart(
            bar_figure(
                list(c["modality"]),
                list(c[col]),
                "Shapley value" if col == "shapley" else "risk change when removed",
            ),
            width="stretch",
            key="contrib",
        )
    if ev.text:
        st.markdown("**Report** (sentences shaded by how much they moved the risk)")
        st.markdown(
            f'<div class="report" style="line-height:1.7">{_highlight(ev.text, ev.spans)}</div>',
            unsafe_allow_html=True,
        )
    genes, pathways = st.columns(2)
    if not ev.groups.empty:
        g = ev.groups.sort_values("attribution", key=np.abs, ascending=False).head(10)
        pathways.markdown("**Pathways**")
        pathways.plotly_chart(
            bar_figure(list(g["group"]), list(g["attribution"])), width="stretch", key="pathways"
        )
    if not ev.features.empty:
        f = ev.features.sort_values("attribution", key=np.abs, ascending=False).head(10)
        genes.markdown("**Top genomic and clinical features**")
        genes.plotly_chart(
            bar_figure(list(f["feature"]), list(f["attribution"])), width="stretch", key="genes"
        )
    _images(ctx, pid, cohort, ev)


def _images(ctx: Ctx, pid: str, cohort, ev) -> None:
    for m in cohort.modalities:
        src = cohort.sources[m]
        if src.kind != "imaging" or pid not in src.patient_ids:
            continue
        sal = ev.saliency.get(m)
        if sal is None and st.toggle(
            "occlusion saliency", value=False, key=f"saliency_{m}", help="about as slow as the rest"
        ):
            sal = patient_saliency(ctx.run_dir, ctx.cohort_path, pid, m)
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
            f"**{m}**" + (" with occlusion saliency (red raises risk)" if sal is not None else "")
        )
        planes = list(images.PLANES) if vol.shape[2] > 1 else ["axial"]
        cols = st.columns(len(planes))
        for col, plane in zip(cols, planes):
            axis = images.PLANES[plane] if vol.shape[2] > 1 else 2
            n = vol.shape[axis]
            idx = col.slider(plane, 0, n - 1, n // 2, key=f"slice_{m}_{plane}") if n > 1 else 0
            img = images.slice_of(vol, plane, idx)
            ov = images.slice_of(sal_full, plane, idx) if sal_full is not None else None
            col.image(images.overlay(img, ov), caption=f"{plane} {idx}", width="stretch")
