"""Report sections on results: discrimination, calibration, risk groups, subgroups, robustness,
limits, provenance."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from multimodal.reporting.facts import RunFacts
from multimodal.reporting.figures import calibration_figure, km_figure, to_data_uri
from multimodal.reporting.page import Section, bullets, ci, fmt, para, table
from multimodal.robustness import YEAR_IN, horizon_label, plot_robustness

__all__ = [
    "Results",
    "calibration_section",
    "discrimination_section",
    "limits",
    "limits_section",
    "provenance_section",
    "risk_groups_section",
    "robustness_section",
    "subgroups_section",
]

#: Rows of flipped patients shown in the page (all are counted).
MAX_FLIP_ROWS = 200
#: Subgroup levels with fewer patients are named but not tabulated (their C-index means nothing).
MIN_SUBGROUP_ROWS = 10


@dataclass
class Results:
    """What the report computed; a part that failed is None and its reason is in ``errors``."""

    horizons: list[float]
    discrimination: pd.DataFrame | None = None
    folds: pd.DataFrame | None = None
    calibrations: list[Any] = field(default_factory=list)
    groups: pd.DataFrame | None = None
    km_summary: pd.DataFrame | None = None
    km_curves: pd.DataFrame | None = None
    subgroups: pd.DataFrame | None = None
    robustness: Any = None
    n_boot: int = 200
    seed: int = 0
    exact_horizons: bool = False
    """S(t) at the horizons predicted by the fold models (else interpolated from predictions.csv)."""
    errors: dict[str, str] = field(default_factory=dict)


def _missing(results: Results, key: str, what: str) -> str:
    reason = results.errors.get(key, "not computed")
    return para(f"{what} could not be computed: {reason}", "warn")


def _img(fig: Any, alt: str) -> str:
    return f'<img src="{to_data_uri(fig)}" alt="{html.escape(alt)}">'


def discrimination_section(facts: RunFacts, results: Results) -> Section:
    if results.discrimination is None:
        return Section(
            "discrimination",
            "Discrimination",
            _missing(results, "discrimination", "Discrimination"),
        )
    d = results.discrimination.assign(
        **{
            "95% CI": [
                ci(lo, hi)
                for lo, hi in zip(results.discrimination["low"], results.discrimination["high"])
            ]
        }
    )[["metric", "estimate", "95% CI", "how"]]
    body = table(d)
    body += para(
        f"Pooled out-of-fold predictions of all {len(facts.val)} patients (risks centred per fold); "
        f"95% CIs are percentile bootstraps over patients ({results.n_boot} resamples, seed "
        f"{results.seed}). A higher C or AUC is better; 0.5 is chance."
    )
    if results.folds is not None and len(results.folds):
        body += "<h3>Per fold (the run's metrics.json)</h3>" + table(results.folds)
        body += para(
            "The headline C-index of the run (the dashboard's and metrics.json's) is the mean over "
            "folds of Harrell's C on each fold's validation patients. The pooled C above ranks all "
            "patients at once, including pairs from different folds, so the two differ slightly.",
            "note",
        )
    return Section("discrimination", "Discrimination", body)


def calibration_section(facts: RunFacts, results: Results) -> Section:
    cals = results.calibrations
    if not cals:
        return Section(
            "calibration", "Calibration", _missing(results, "calibration", "Calibration")
        )
    rows = [
        {
            "horizon": c.label,
            "mean predicted event probability": c.predicted_mean,
            "observed (Kaplan-Meier, all patients)": c.observed_km,
            "ICI": c.result.ici,
            "E50": c.result.e50,
            "E90": c.result.e90,
            "groups": len(c.result.table),
        }
        for c in cals
    ]
    body = _img(calibration_figure(cals, facts.time_unit), "calibration plots") + table(
        pd.DataFrame(rows)
    )
    body += para(
        "Patients are split into equal-sized groups by predicted event probability; each point "
        "compares the group's mean prediction with its Kaplan-Meier estimate. ICI: patient-weighted "
        "mean absolute difference between the two; E50, E90: its median and 90th percentile. "
        + (
            "Each patient's S(t) at a horizon is predicted by the fold model that did not train on "
            "the patient."
            if results.exact_horizons
            else "A patient's S(t) at a horizon is interpolated linearly between the run's "
            "evaluation times (the fold models were not available to predict it exactly)."
        ),
        "note",
    )
    return Section("calibration", "Calibration", body)


def _ticks(max_time: float, unit: str) -> list[float]:
    per_year = YEAR_IN.get(unit, 12.0)
    step = per_year
    while max_time / step > 8:
        step *= 2
    while max_time / step < 3 and step > per_year / 4:
        step /= 2
    return [float(round(k * step, 2)) for k in range(int(max_time // step) + 1)]


def risk_groups_section(facts: RunFacts, results: Results) -> Section:
    if results.groups is None or results.km_curves is None:
        return Section(
            "risk-groups",
            "Kaplan-Meier by predicted risk group",
            _missing(results, "risk_groups", "Risk groups"),
        )
    groups = results.groups
    ticks = _ticks(float(groups["time"].max()), facts.time_unit)
    body = _img(km_figure(groups, results.km_curves, ticks, facts.time_unit), "Kaplan-Meier curves")
    s = results.km_summary
    if s is not None and len(s):
        h = horizon_label(float(s["horizon"].iloc[0]), facts.time_unit)
        frame = pd.DataFrame(
            {
                "group": s["label"],
                "patients": s["n"],
                "events": s["events"],
                f"median survival ({facts.time_unit})": s["median_survival"],
                f"survival at {h}": s["surv_at_horizon"],
                "95% CI": [ci(a, b) for a, b in zip(s["surv_low"], s["surv_high"])],
                f"RMST difference vs low ({facts.time_unit})": s["rmst_diff"],
                "log-rank p vs low": [f"{p:.2g}" for p in s["logrank_p_vs_low"]],
            }
        )
        body += table(
            frame,
            {
                f"median survival ({facts.time_unit})": 1,
                f"RMST difference vs low ({facts.time_unit})": 1,
            },
        )
        body += para(f"Log-rank test over all groups: p = {s['logrank_p'].iloc[0]:.2g}.")
    body += para(
        "Each validation patient is placed by the cut-points of its own fold: tertiles of that "
        "fold's training-patient risks (never of the patients being grouped). Numbers at risk are "
        "shown under the curves; an infinite median survival means the curve stays above 0.5.",
        "note",
    )
    return Section("risk-groups", "Kaplan-Meier by predicted risk group", body)


def subgroups_section(facts: RunFacts, results: Results) -> Section:
    sub = results.subgroups
    if sub is None:
        return Section(
            "subgroups", "Subgroup audit", _missing(results, "subgroups", "The subgroup audit")
        )
    h = horizon_label(float(sub["horizon"].iloc[0]), facts.time_unit)
    frame = pd.DataFrame(
        {
            "variable": sub["variable"],
            "level": sub["level"],
            "patients": sub["n"],
            "events": sub["events"],
            "C-index": sub["c_index"],
            "95% CI": [ci(a, b) for a, b in zip(sub["c_low"], sub["c_high"])],
            "C within levels": sub["c_reference"],
            f"predicted S at {h}": sub["predicted_surv"],
            f"observed S at {h}": sub["observed_surv"],
            "flag": sub["flag_reason"].fillna(""),
            "_flag": sub["flag"].astype(bool),
        }
    )
    flagged = int(sub["flag"].sum())
    tiny = (sub["n"] < MIN_SUBGROUP_ROWS).to_numpy() & ~sub["flag"].to_numpy(bool)
    body = table(frame[~tiny], flag="_flag")
    if tiny.any():
        body += para(
            f"{int(tiny.sum())} level(s) with fewer than {MIN_SUBGROUP_ROWS} patients are not "
            f"shown ({', '.join(f'{v}={lv}' for v, lv in zip(sub['variable'][tiny], sub['level'][tiny]))}).",
            "note",
        )
    body += para(
        f"{flagged} subgroup(s) flagged. A subgroup of at least 100 patients is flagged when its "
        "C-index CI lies below, or its C is more than 0.05 under, the C within the levels of the "
        "same variable (pairs of patients in the same level only: grouping by a prognostic variable "
        "such as stage removes the differences between levels that any model ranks easily). Small "
        "subgroups have wide intervals; read them as a screen, not a test."
    )
    return Section("subgroups", "Subgroup audit (fairness)", body)


def robustness_section(facts: RunFacts, results: Results) -> Section:
    r = results.robustness
    if r is None:
        return Section(
            "robustness",
            "Robustness to input changes",
            _missing(results, "robustness", "The robustness check"),
        )
    small = r.table[r.table["kind"] != "drop"].drop_duplicates(["modality", "kind"])
    lines = [f"{row.modality} ({row.kind}): {row.description}" for row in small.itertuples()]
    drops = r.table[r.table["kind"] == "drop"]
    if len(drops):
        lines.append(f"each modality, hidden for everyone: {drops['description'].iloc[0]}")
    intro = bullets(lines)
    t = r.table
    frame = pd.DataFrame(
        {
            "perturbation": t["perturbation"],
            "patients changed": t["n_changed"],
            "Spearman": t["spearman"],
            "mean |change| (points)": t["mean_abs_change"],
            "max |change| (points)": t["max_abs_change"],
            "risk-group flips": t["n_flipped"],
            "C-index": t["c_index"],
            "change in C": [f"{round(v, 3) + 0.0:+.3f}" for v in t["c_index_change"]],
        }
    )
    body = para(
        f"Each fold model predicts its own validation patients with and without a small, stated "
        f"change of one modality; compared is the predicted event probability by "
        f"{r.horizon_label}. Spearman and the changes are over the patients whose input changed; "
        f"the C-index (Harrell, mean over folds; {fmt(r.c_index)} unperturbed) over every "
        f"validation patient. Risk groups: tertiles of the unperturbed event probability. "
        f"Random draws seeded ({r.seed})."
    )
    body += intro + table(frame) + _img(plot_robustness(r), "robustness plot")
    body += "".join(para(n, "warn") for n in r.notes)
    flips = r.flipped
    counts = (
        flips.groupby("perturbation", sort=False).size() if len(flips) else pd.Series(dtype=int)
    )
    body += "<h3>Patients whose risk group flips under the smallest perturbation of each kind</h3>"
    body += (
        bullets(f"{k}: {v} patient(s)" for k, v in counts.items()) if len(counts) else para("None.")
    )
    if len(flips):
        shown = flips.head(MAX_FLIP_ROWS)
        shown = shown.assign(
            prob_before=shown["prob_before"] * 100, prob_after=shown["prob_after"] * 100
        )
        shown = shown.rename(
            columns={"prob_before": "event prob. before (%)", "prob_after": "event prob. after (%)"}
        )
        more = f" (first {MAX_FLIP_ROWS} of {len(flips)})" if len(flips) > MAX_FLIP_ROWS else ""
        body += (
            f"<details><summary>The patients{html.escape(more)}</summary>"
            f"{table(shown, 1)}</details>"
        )
    return Section("robustness", "Robustness to input changes", body)


def limits(facts: RunFacts, results: Results, coverage: pd.DataFrame) -> list[str]:
    """Limitations stated from the facts of the run (each one only when it applies)."""
    val = facts.val
    out = [
        "Internal validation only (cross-validation on one cohort); performance on patients from "
        "elsewhere is unknown until it is measured there."
    ]
    n, events = len(val), int(val["event"].sum())
    name = str(getattr(facts.cohort, "name", "") or "")
    if name.startswith("synthetic"):
        out.append("The cohort is synthetic: the numbers check the software, not a clinical use.")
    if n < 300:
        out.append(f"Small sample: {n} patients; every estimate is imprecise (see the CIs).")
    if events < 100:
        out.append(
            f"Few events: {events}; calibration and subgroup estimates are especially uncertain."
        )
    per_fold = [f.get("n_events_val") for f in facts.folds if f.get("n_events_val") is not None]
    if per_fold and min(per_fold) < 30:
        out.append(
            f"Some validation folds hold few events (as few as {min(per_fold)}): per-fold C-indices vary."
        )
    for row in coverage.itertuples() if len(coverage) else []:
        if row.modality != "every modality" and row.percent < 70:
            out.append(
                f"Low coverage of {row.modality}: {row.percent:.0f}% of patients have it; the model mostly predicts without it."
            )
    subset = facts.section("data").get("fold_indices")
    if subset:
        out.append(
            f"Only fold(s) {', '.join(map(str, subset))} of the cross-validation were run: the "
            f"estimates rest on {n} of the cohort's patients."
        )
    not_kept = [f.get("fold") for f in facts.folds if f.get("best_epoch") == 0]
    if not_kept and facts.section("members").get("deep", True):
        out.append(
            f"The deep fusion residual was not kept in {len(not_kept)} of {len(facts.folds)} folds "
            f"(fold {', '.join(map(str, not_kept))}): there the model is its linear Cox members."
        )
    frozen = facts.section("data").get("frozen_image_encoder")
    if (
        frozen
        and not (frozen.get("options") or {}).get("pretrained_path")
        and any(facts.modality_kind(m) == "imaging" for m in facts.modalities)
    ):
        out.append(
            "Image features come from a randomly initialised, frozen CNN (no pretrained weights)."
        )
    for c in results.calibrations:
        if c.result.ici > 0.05:
            out.append(
                f"Calibration by {c.label} is off by {c.result.ici:.2f} on average (ICI): read absolute probabilities with care."
            )
    if results.subgroups is not None and results.subgroups["flag"].any():
        names = [
            f"{r.variable}={r.level}"
            for r in results.subgroups[results.subgroups["flag"]].itertuples()
        ]
        out.append(f"The model ranks worse in subgroup(s) {', '.join(names)} (subgroup audit).")
    out += _robustness_limits(results)
    wanted = {round(YEAR_IN.get(facts.time_unit, 12.0) * y) for y in (1, 3, 5)}
    missing = sorted(wanted - {round(h) for h in results.horizons})
    if missing:
        out.append(
            f"Horizon(s) {', '.join(f'{h:g} {facts.time_unit}' for h in missing)} not reported: "
            "fewer than 10% of patients are followed that long"
            + (
                "."
                if results.exact_horizons
                else ", or it is after the run's last evaluation time."
            )
        )
    return out


def _robustness_limits(results: Results) -> list[str]:
    r = results.robustness
    if r is None:
        return ["Robustness to input changes was not measured for this report."]
    out = []
    t = r.table
    small = t[t["kind"] != "drop"].groupby(["modality", "kind"], sort=False).head(1)
    for row in small.itertuples():
        if row.n_changed and (row.n_flipped / row.n_changed > 0.1 or row.spearman < 0.9):
            out.append(
                f"Sensitive to {row.perturbation}: {row.n_flipped} of {row.n_changed} patients change "
                f"risk group (Spearman {row.spearman:.2f})."
            )
    for row in t[t["kind"] == "drop"].itertuples():
        if row.max_abs_change < 1e-6:
            out.append(
                f"Hiding {row.modality} for everyone changes no prediction: the fitted model does "
                "not use it."
            )
        elif abs(row.c_index_change) < 0.005:
            out.append(
                f"Hiding {row.modality} for everyone changes the C-index by {row.c_index_change:+.3f}: it adds little to the ranking."
            )
    return out


def limits_section(facts: RunFacts, results: Results, coverage: pd.DataFrame) -> Section:
    return Section(
        "limits",
        "Limits",
        bullets(limits(facts, results, coverage))
        + para(
            "These statements are generated from the run's facts (sample size, events, coverage, "
            "members kept, calibration, subgroups, robustness); they do not replace a clinical review.",
            "note",
        ),
    )


def provenance_section(facts: RunFacts, version: str, created: str) -> Section:
    meta = facts.meta
    rows = [
        ("run id", meta.get("run_id")),
        ("trained with multimodal", meta.get("package_version")),
        ("git SHA of the code", meta.get("git_sha") or "not recorded (not a git checkout)"),
        ("torch", meta.get("torch_version")),
        ("seed", meta.get("seed")),
        ("run created", meta.get("created")),
        ("run-folder schema", meta.get("schema_version", 1)),
        (
            "data fingerprints",
            ", ".join(f"{k}={v}" for k, v in (meta.get("data_fingerprint") or {}).items()),
        ),
        ("run folder", str(facts.run_dir)),
        ("report written by multimodal", f"{version} on {created}"),
    ]
    frame = pd.DataFrame(
        [(k, "–" if v is None else str(v)) for k, v in rows], columns=["", "value"]
    )
    config = yaml.safe_dump(facts.config, sort_keys=False, default_flow_style=None)
    body = table(frame) + "<h3>Resolved config (config.yaml without _meta)</h3>"
    body += f"<pre>{html.escape(config)}</pre>"
    return Section("provenance", "Configuration and provenance", body)
