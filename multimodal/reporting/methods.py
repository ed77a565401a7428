"""Report sections on what went in and how: summary, data, inputs, model, validation protocol."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from multimodal.config import CUMULATIVE_FORMS, interaction_blocks
from multimodal.reporting.facts import ENDPOINT_TEXT, RunFacts, coverage_table, reverse_km_median
from multimodal.reporting.page import Section, bullets, ci, fmt, para, table
from multimodal.reporting.performance import main_horizon
from multimodal.robustness import horizon_label

__all__ = [
    "data_section",
    "inputs_section",
    "model_section",
    "summary_section",
    "validation_section",
]

HEADS_TEXT = {
    "cox": "Cox proportional hazards (partial likelihood, Breslow baseline hazard)",
    "logistic_hazard": "discrete-time logistic hazard",
    "deephit": "DeepHit (discrete-time, ranking loss)",
}


#: How the methods section names each tree member kind.
TREES_TEXT = {
    "boosting": "gradient-boosted Cox trees (scikit-survival)",
    "forest": "a random survival forest (scikit-survival)",
}


def _key(label: str, value: str) -> str:
    return f"<div><b>{html.escape(value)}</b>{html.escape(label)}</div>"


def summary_section(facts: RunFacts, results: Any) -> Section:
    val, m = facts.val, facts.metrics
    name = getattr(facts.cohort, "name", None) or "the run's cohort"
    mods = ", ".join(facts.modalities)
    title = (
        f"Model card: {facts.endpoint.upper()} prognosis in {name} from {mods} "
        f"({facts.section('head').get('name', 'cox')} model, internal cross-validation)"
    )
    keys = [
        _key("patients", str(len(val))),
        _key("events", str(int(val["event"].sum()))),
        _key("modalities", str(len(facts.modalities))),
        _key(
            "C-index, mean ± SD over folds",
            f"{fmt(m.get('c_index'))} ± {fmt(m.get('c_index_std'))}",
        )
        if len(facts.folds) > 1
        else _key("C-index (1 fold: no SD)", fmt(m.get("c_index"))),
    ]
    harrell = results.discrimination
    if harrell is not None and len(harrell):
        row = harrell.iloc[0]
        keys.append(
            _key("Harrell's C, pooled (95% CI)", f"{fmt(row.estimate)} ({ci(row.low, row.high)})")
        )
    if results.calibrations:
        main = main_horizon(results.horizons, facts.time_unit)
        cal = next((c for c in results.calibrations if c.horizon == main), results.calibrations[0])
        keys.append(_key(f"calibration error (ICI) by {cal.label}", fmt(cal.result.ici)))
    text = (
        f"This page describes one trained run ({facts.meta.get('run_id', 'no run id')}) of the "
        f"multimodal package: a model of {ENDPOINT_TEXT.get(facts.endpoint, facts.endpoint)}, "
        f"developed and evaluated by cross-validation on {name} (internal validation only; no "
        "external cohort). Every number comes from the run folder (config, metrics, out-of-fold "
        "predictions, fold models) and the cohort; nothing in the run folder is executed."
    )
    body = f'<div class="key">{"".join(keys)}</div>{para(text)}'
    body += "".join(para(n, "warn") for n in facts.notes)
    return Section("summary", title, body, level=1)


def data_section(facts: RunFacts, horizons: list[float]) -> Section:
    val = facts.val
    t, e = val["time"].to_numpy(float), val["event"].to_numpy(bool)
    cohort = facts.cohort
    unit = facts.time_unit + ("" if facts.unit_stated else " (not stated by the cohort; assumed)")
    source = (
        "a TCGA-style folder" if getattr(cohort, "manifest", None) is None else "a cohort manifest"
    )
    rows = [
        ("cohort", getattr(cohort, "name", None) or "not found"),
        ("source", f"{facts.cohort_path} ({source})" if facts.cohort_path else "not found"),
        ("outcome", ENDPOINT_TEXT.get(facts.endpoint, facts.endpoint)),
        ("time unit", unit),
        (
            "reporting horizons",
            ", ".join(horizon_label(h, facts.time_unit) for h in horizons) or "–",
        ),
        ("patients in the run", str(len(val))),
        ("events", f"{int(e.sum())} ({100 * e.mean():.1f}%)"),
        ("censored", str(int((~e).sum()))),
        (
            "median follow-up (reverse Kaplan-Meier)",
            f"{fmt(reverse_km_median(t, e), 1)} {facts.time_unit}",
        ),
        (
            "observed times",
            f"{fmt(t.min(), 1)} to {fmt(t.max(), 1)} {facts.time_unit} (median {fmt(np.median(t), 1)})",
        ),
    ]
    if cohort is not None:
        left = len(cohort.patients) - len(val)
        rows.append(
            (
                "cohort patients not in the run",
                f"{left} (outside the run's folds or fixed split, or without the outcome)",
            )
        )
    body = table(pd.DataFrame(rows, columns=["", "value"]))
    body += para(
        "Each patient counts once: as a validation patient of the fold that held it out. Times "
        "are measured from the cohort's baseline (the time origin of its patient table)."
    )
    return Section("data", "Data, outcome and patients", body)


def _preparation(facts: RunFacts, m: str, kind: str) -> str:
    data = facts.section("data")
    spec = next((fm.get("specs", {}).get(m) for fm in facts.fold_meta.values()), None) or {}
    if kind == "clinical":
        source = getattr(facts.cohort, "sources", {}).get(m)
        num = ", ".join(getattr(source, "numeric", []) or []) or "none"
        cat = ", ".join(getattr(source, "categorical", []) or []) or "none"
        return (
            f"numeric covariates ({num}) z-scored with the training fold's mean and SD; "
            f"categorical covariates ({cat}) indexed by their training levels"
        )
    if kind == "genomics":
        transform = data.get("genomics_transform") or "none"
        asinh = "mapped through asinh (a log for large values that keeps the sign)"
        return (
            (f"values {asinh}; " if transform == "asinh" else "")
            + f"{spec.get('in_features', '?')} features kept (the up to "
            f"{data.get('genomics_max_features') or 'all'} most variable on the training fold"
            + (
                f", of each data type: {', '.join('_' + t for t in data['genomics_types'])} "
                "columns and the rest ranked apart"
                if data.get("genomics_types") and data.get("genomics_max_features")
                else ""
            )
            + "), "
            + (f"their values {asinh}, " if transform == "asinh_after_selection" else "")
            + "missing values set to the training median, then z-scored"
            + (
                f" and clipped at +-{data['genomics_clip']:g} SDs"
                if data.get("genomics_clip")
                else ""
            )
        )
    if kind == "text":
        return (
            f"reports split into sentences, each embedded by the frozen text model "
            f"{data.get('text_model') or 'all-MiniLM-L6-v2 (the package default)'}; embeddings pooled per patient and "
            "standardised with the training fold's mean and SD"
        )
    if kind == "imaging":
        frozen = data.get("frozen_image_encoder")
        size = data.get("image_size")
        how = (
            f"resized to {size} voxels per side, intensity '{data.get('image_intensity', 'scale')}'"
        )
        if frozen:
            weights = (frozen.get("options") or {}).get("pretrained_path")
            how += (
                f", embedded by a frozen {frozen.get('name')} backbone "
                f"({'weights ' + str(weights) if weights else 'random initial weights, no pretraining'}); "
                "embeddings standardised with the training fold's mean and SD"
            )
        return how
    if kind == "feature_bag":
        return "bags of precomputed patch or slide features, several files per patient concatenated"
    return kind


def inputs_section(facts: RunFacts) -> Section:
    cov = coverage_table(facts) if facts.cohort is not None else pd.DataFrame()
    encoders = facts.section("encoders")
    linear = set(facts.section("members").get("linear") or [])
    rows = []
    for m in facts.modalities:
        kind = facts.modality_kind(m)
        enc = (encoders.get(m) or {}).get("name", "default")
        member = (
            "clinical linear term" if kind == "clinical" else ("linear term" if m in linear else "")
        )
        rows.append((m, kind, enc, member, _preparation(facts, m, kind)))
    prep = pd.DataFrame(
        rows,
        columns=[
            "modality",
            "kind",
            "deep encoder",
            "linear member",
            "preparation (fitted on training patients only)",
        ],
    )
    body = "<h3>Coverage</h3>"
    if len(cov):
        cov = cov.assign(percent=cov["percent"].round(1))
        body += table(
            cov.rename(columns={"patients": "patients with it", "events": "events among them"}), 1
        )
    else:
        body += para("The cohort was not found: coverage is not shown.", "warn")
    body += "<h3>Inputs and their preparation</h3>" + table(prep)
    body += _clinical_missing(facts)
    dropout = facts.section("fusion").get("modality_dropout", 0)
    body += "<h3>How missing inputs were handled</h3>" + bullets(
        [
            "A patient without a modality is not imputed: the modality's mask marks it missing, the "
            "fusion leaves it out and its linear member contributes nothing; the prediction rests "
            "on the modalities the patient has.",
            f"While training, each present modality was hidden at random with probability "
            f"{fmt(dropout, 2)} (modality dropout), so that the model also learns to predict without it.",
            "Clinical covariates: a missing numeric value takes the training mean (0 after scaling) "
            "and sets a missing-value indicator; a missing or unseen category is its own 'unknown' level.",
            "Genomic values: a missing value takes the training median of its feature.",
            "Report text: an empty report counts as a missing modality.",
            "New patients: inputs outside the training data or plausible ranges are refused, not "
            "predicted (multimodal.models.input_checks).",
        ]
    )
    return Section("inputs", "Inputs, coverage and missing data", body)


def _clinical_missing(facts: RunFacts) -> str:
    cohort = facts.cohort
    if cohort is None:
        return ""
    ids = facts.val["patient_id"].astype(str)
    rows = []
    for m in facts.modalities:
        source = cohort.sources.get(m)
        if source is None or source.kind != "clinical":
            continue
        t = source.table[~source.table.index.duplicated()].reindex(ids)
        for c in [*source.numeric, *source.categorical]:
            if c in t:
                rows.append((m, c, int(t[c].isna().sum()), 100.0 * t[c].isna().mean()))
    if not rows:
        return ""
    frame = pd.DataFrame(rows, columns=["modality", "covariate", "missing", "percent missing"])
    return (
        "<h3>Missing clinical values (patients without the clinical table count as missing)</h3>"
        + table(frame, 1)
    )


def _interaction_lines(members: dict, fold_meta: dict | None = None) -> list[str]:
    """The effect-modification products of ``members.interactions``, one line per pair (none
    without). Where the fold models were fitted by the combiner, a pair whose block no fold
    holds (the cohort lacks the column, as GBMLGG lacks stage) says so instead."""
    pairs = members.get("interactions") or {}
    fits = [meta.get("linear_fit") for meta in (fold_meta or {}).values() if meta.get("linear_fit")]
    stacked = members.get("combine") == "stacked"
    form = members.get("interaction_form") or "components"
    cumulative = (
        "every feature times each cumulative level indicator (level >= the second, the "
        "third, ... in sorted order; the first indicator also carries effects common to "
        "every level but the first), with an elastic-net penalty (l1 ratio "
        f"{members.get('interaction_l1_ratio', 0.5)}) chosen on out-of-fold scores"
    )
    components = (
        f"the {members.get('interaction_components', 5)} leading principal components "
        "(training patients) times each level, ridge-penalised"
    )
    how = {
        "cumulative": cumulative,
        "both": f"two blocks: {components}; and {cumulative}",
    }.get(form, components)
    lines = []

    def held(block: str) -> bool:
        """Whether some fold model holds ``block`` (True without fold models to ask)."""
        return not fits or any(
            block in {*f.get("penalties", {}), *f.get("weights", {})} for f in fits
        )

    for m, c in pairs.items():
        blocks = interaction_blocks(m, c, form)
        if not any(held(b) for b in blocks):
            lines.append(
                f"Effect modification ({m} x {c}) was asked for, but no fold model has the "
                f"products: the cohort has no categorical clinical column {c!r} with enough "
                "levels."
            )
            continue
        text, two = how, form == "both"
        if two and not held(blocks[-1]):  # too few levels for a threshold: components alone
            text = (
                f"{components} (no fold model has the cumulative products: {c!r} has too few "
                "levels)"
            )
            two = False
        elif two:
            text += f" (blocks {blocks[0]} and {blocks[-1]})"
        which = "each block" if two else "a block"
        own = f"; {which} with its own penalty and stacking weight" if stacked else ""
        lines.append(f"Effect modification ({m} x {c}): {text}{own}.")
    return lines


def model_section(facts: RunFacts) -> Section:
    cfg_head, fusion, members = (
        facts.section("head"),
        facts.section("fusion"),
        facts.section("members"),
    )
    encoders = facts.section("encoders")
    head = cfg_head.get("name", "cox")
    deep = members.get("deep", True)
    lines = [
        f"Survival head: {HEADS_TEXT.get(head, head)}"
        + (f", {cfg_head.get('ties')} ties" if head == "cox" and cfg_head.get("ties") else "")
        + ".",
        "Linear members (fitted first, by penalised Cox on the training patients): "
        + ("a clinical term" if members.get("clinical", True) else "no clinical term")
        + (
            f" and ridge terms on {', '.join(members.get('linear') or [])}"
            if members.get("linear")
            else ""
        )
        + f"; combined '{members.get('combine', 'joint')}'.",
        *_interaction_lines(members, facts.fold_meta),
        *(
            [
                "Tree members: "
                + ", ".join(TREES_TEXT.get(k, k) for k in members["trees"])
                + " on the clinical covariates and the "
                + f"{members.get('tree_features', 50)} features of "
                + f"{', '.join(members.get('tree_inputs') or ['genomics'])} with the largest "
                + (
                    "variance (raw values) on the training patients"
                    if members.get("tree_selection") == "variance"
                    else "univariate Cox score on the training patients"
                )
                + "; fixed hyper-parameters; weighed "
                "with the linear members by a Cox model on their out-of-fold scores."
            ]
            if members.get("trees")
            else []
        ),
        (
            "Deep residual: per-modality encoders ("
            + ", ".join(
                f"{m}: {(encoders.get(m) or {}).get('name', 'default')}" for m in facts.modalities
            )
            + f") fused by {fusion.get('name')} (dimension {fusion.get('dim')}, dropout "
            f"{fusion.get('dropout')}), kept only where early stopping preferred it to the linear members."
        )
        if deep
        else "No deep residual (members.deep: false): the model is its linear members.",
    ]
    rows = []
    by_fold = {int(f["fold"]): f for f in facts.folds if "fold" in f}
    for k, meta in sorted(facts.fold_meta.items()):
        fit = meta.get("linear_fit") or {}
        best = by_fold.get(k, {}).get("best_epoch")
        kept = (
            "not trained"
            if not deep
            else (
                "not kept (epoch 0: linear members alone)"
                if best == 0 and fit
                else f"kept ({best} epochs)"
            )
        )
        rows.append(
            {
                "fold": k,
                "members": ", ".join(
                    [*(meta.get("members") or []), *(f"tree:{k}" for k in meta.get("trees") or [])]
                )
                or "none",
                "penalties": ", ".join(
                    f"{m}={fmt(p, 3)}" for m, p in (fit.get("penalties") or {}).items()
                )
                or "–",
                "stacked weights": ", ".join(
                    f"{m}={'/'.join(fmt(w, 3) for w in ws)}"
                    for m, ws in (fit.get("weights") or {}).items()
                )
                + (
                    " (clinical covariates alone: members.stack_fallback)"
                    if fit.get("fallback")
                    else ""
                )
                or "–",
                "deep residual": kept,
            }
        )
    body = bullets(lines) + "<h3>Members of each fold model</h3>" + table(pd.DataFrame(rows))
    body += "<h3>What the model outputs</h3>" + bullets(
        [
            "risk: the log relative hazard, centred on the fold model's mean training patient "
            "(higher = worse prognosis; 0 = an average training patient).",
            "S(t): the probability of being event-free at time t (Breslow baseline hazard from the "
            "training patients); the event probability by t is 1 − S(t).",
            "For a new patient the fold models are averaged (risks centred per fold, curves averaged).",
            "Risk groups (Kaplan-Meier section): tertiles of each fold's training-patient risks; no "
            "decision threshold is proposed.",
        ]
    )
    body += para(
        "The fitted model is fully specified by the run folder: model/fold_<k>/weights.safetensors, "
        "model.json (input specs, members, risk centre) and preprocess.json (the fitted "
        "preprocessing); multimodal.load_run(RUN_DIR) rebuilds it.",
        "note",
    )
    return Section("model", "The model and its members", body)


def _penalty_line(members: dict[str, Any]) -> str:
    """How the linear members' penalties were set."""
    if not members.get("clinical", True):
        return "No linear members: the model is its deep part alone."
    linear = members.get("linear") or []
    stacked = bool(linear) and members.get("combine") == "stacked"
    how = (
        "by how well each penalty's out-of-fold scores (5 inner folds of the fitting patients) "
        "fit beside the clinical covariates"
        if stacked
        else f"by {members.get('penalty_folds', 3)}-fold cross-validation within the fitting "
        "patients"
    )
    sparse = {m: r for m, r in (members.get("elastic_net") or {}).items() if m in linear}
    beside = bool(members.get("elastic_net_beside"))
    ridge = [m for m in linear if beside or not (stacked and m in sparse)]
    text = (
        f"Ridge penalties of the linear terms on {', '.join(ridge)}: chosen from "
        f"{members.get('penalties')} {how}; "
        if ridge
        else ""
    )
    for m, suffixes in (members.get("column_blocks") or {}).items():
        if m in linear and suffixes:
            text += (
                f"the {m} term is cut into one block per column type ("
                + ", ".join(f"{m}:{x} for the columns named ..._{x}" for x in suffixes)
                + "), each with its own penalty (a type without columns among the selected "
                "ones is no block: the fold table names the blocks fitted); "
            )
    if (
        stacked
        and members.get("interactions")
        and members.get("interaction_form") in CUMULATIVE_FORMS
    ):
        text += (
            "the cumulative interaction products' penalty is an elastic-net one (scikit-survival's Coxnet "
            "alpha, its own scale), chosen from a path of 20 by the second stage's fit to the "
            "out-of-fold scores; "
        )
    if stacked and sparse:
        text += (
            "the terms on "
            + ", ".join(f"{m} (l1 ratio {r})" for m, r in sparse.items())
            + (" also get" if beside else " take")
            + " an elastic-net penalty (scikit-survival's Coxnet alpha, its own scale), "
            "chosen from a path of 20 the same way"
            + (
                ", a second member beside the ridge one (named .../net) with its own stacking "
                "weight; "
                if beside
                else "; "
            )
        )
    if stacked and members.get("penalty_choice") == "nested":
        text += (
            "the out-of-fold scores the second stage weighs are nested: each inner fold's "
            "come from the penalty chosen on the other inner folds alone; "
        )
    stack = members.get("stack_penalty") or 0.0
    if stacked and stack:
        text += (
            "the stacked second stage's weights (per standard deviation of each member's "
            "out-of-fold score) are ridge-penalised by "
            + (
                f"a penalty chosen from {members.get('stack_penalties')} by cross-validating "
                "the second stage on the fitting patients (per fold: penalties 'stack'); "
                if stack == "auto"
                else f"{stack}; "
            )
        )
    repeats = int(members.get("stack_repeats") or 1)
    if stacked and repeats > 1:
        text += (
            f"the second stage is fitted on the out-of-fold scores of {repeats} different inner "
            "splits and its weights averaged over them; "
        )
    if stacked and members.get("stack_fallback"):
        text += (
            "where the second stage predicts held-out fitting patients no better (Harrell's C, "
            f"{members.get('penalty_folds', 3)}-fold cross-validation) than the clinical "
            "covariates alone, every member weight is set to 0; "
        )
    penalty = members.get("clinical_penalty")
    text += (
        f"the clinical term's penalty is fixed at {penalty}."
        if penalty is not None
        else "the clinical term is not warm-started (it trains with the deep part)."
    )
    return text[0].upper() + text[1:]


def validation_section(facts: RunFacts) -> Section:
    data, train, members = facts.section("data"), facts.section("train"), facts.section("members")
    if data.get("split"):
        folds = f"the cohort's fixed split '{data['split']}' (fold files)"
    else:
        folds = f"{data.get('folds', 5)} folds stratified by event status"
    subset = data.get("fold_indices")
    lines = [
        f"Cross-validation over {folds}"
        + (f"; only folds {subset} were run" if subset else "")
        + ". Each patient is predicted by the one fold model that did not see it; every number "
        "on this page is computed on these out-of-fold predictions.",
        f"Inside each training fold, {100 * float(data.get('early_stopping_fraction', 0.15)):.0f}% "
        "of the training patients (stratified by event) are held out for early stopping: the hold-out "
        f"C-index averaged over {train.get('es_smoothing', 1)} epochs, patience {train.get('patience')}, "
        f"a later epoch must beat the linear members (epoch 0) by more than {train.get('es_min_delta', 0)}.",
        _penalty_line(members),
        (
            "Refit: each fold model was then rebuilt on all its training patients: linear members "
            "refitted, then the number of epochs early stopping chose (none where epoch 0 won)."
            if train.get("refit")
            else "No refit: each fold model is the one trained on the fitting part of its training patients."
        ),
        "The Breslow baseline hazard and the risk centre are fitted on the training patients; the "
        "validation fold is never used for fitting, early stopping or any choice.",
        f"Fixed by the config, not tuned in this run: learning rate {train.get('lr')}, batch size "
        f"{train.get('batch_size')}, weight decay {train.get('weight_decay')}, at most "
        f"{train.get('epochs')} epochs, seed {train.get('seed')}, the architecture above.",
    ]
    rows = [
        {
            "fold": f.get("fold"),
            "training patients": f.get("n_train"),
            "validation patients": f.get("n_val"),
            "validation events": f.get("n_events_val"),
            "best epoch": f.get("best_epoch"),
            "Harrell's C": f.get("c_index"),
            "Uno's C": f.get("uno_c"),
            "mean td-AUC": f.get("td_auc"),
            "integrated Brier": f.get("ibs"),
        }
        for f in facts.folds
    ]
    body = bullets(lines) + "<h3>Patients and events per fold</h3>" + table(pd.DataFrame(rows))
    return Section("validation", "Validation protocol", body)
