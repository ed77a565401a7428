# %% [markdown]
# # Tutorial: why a prediction, and for whom the model works
#
# A notebook-friendly script (percent format: open it in Jupyter with jupytext, VS Code or
# Spyder, or run `python docs/tutorial.py`). It trains a small fusion model on a synthetic cohort
# whose ground truth is known, explains its predictions, and analyses the cohort: risk groups,
# Kaplan-Meier curves, a subgroup audit and an external validation. A last part repeats the
# external validation on TCGA (train on LUAD, test on LUSC) when `../shared/data/tcga` exists.
#
# `tests/test_tutorial.py` executes this file top to bottom. Settings come from the environment:
# `TUTORIAL_OUT` (output folder), `TUTORIAL_PATIENTS`, `TUTORIAL_EPOCHS`, `TUTORIAL_TCGA`
# (a TCGA data folder, or empty to skip that part).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless; drop this line in a notebook
import matplotlib.pyplot as plt

import multimodal
from multimodal import cohort_analysis as ca
from multimodal.data.synth import generate_cohort

OUT = Path(os.environ.get("TUTORIAL_OUT", "runs/tutorial"))
N_PATIENTS = int(os.environ.get("TUTORIAL_PATIENTS", "400"))
EPOCHS = int(os.environ.get("TUTORIAL_EPOCHS", "30"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. A synthetic cohort and a small fusion model
#
# The generator draws each patient's log-hazard from clinical covariates (age, sex, stage),
# three of nine genomic pathways, report findings (grade, margin, LVI, nodes) and a CT lesion.
# Images are skipped here to keep the tutorial fast; `generate_cohort(..., with_images=True)`
# adds them and `explain` then writes occlusion saliency maps.

# %%
synth = generate_cohort(
    OUT / "cohort", n_patients=N_PATIENTS, seed=0, with_images=False, n_genes=60
)
cohort = multimodal.Cohort.load(synth.manifest_path)
print(cohort)
print(cohort.coverage())

config = {
    "data": {"folds": 2, "modalities": ["clinical", "genomics", "report"]},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 8},
        "genomics": {"name": "snn", "out_dim": 16, "options": {"hidden": 32}},
        "report": {"name": "text_mlp", "out_dim": 8},
    },
    "fusion": {"name": "attention_gated", "dim": 16},
    "train": {"epochs": EPOCHS, "batch_size": 64, "lr": 0.01, "progress": False, "refit": False},
    "eval": {"n_times": 6, "bootstrap": 0, "horizons": [12.0, 36.0]},
}
result = multimodal.train(config, cohort=cohort, out=OUT / "run")
print(f"cross-validated C-index: {result.c_index:.3f}")
model = multimodal.load_run(OUT / "run")

# %% [markdown]
# ## 2. Explanations
#
# `model.explain` averages every explanation over the fold models of the ensemble:
#
# - per-modality contributions: leave-one-modality-out and exact Shapley values, hiding a
#   modality with the model's mask exactly as if it were missing; Shapley values add up to
#   `risk - risk_no_data`;
# - integrated gradients of genomic features (summed per pathway) and clinical covariates;
# - attributions of report sentences (each against a neutral sentence), with character spans.

# %%
explanation = model.explain(cohort, patient_ids=list(cohort.patients.index[:100]))
explanation.save(OUT / "run" / "explanations")  # what the dashboard reads

contrib = explanation.modality_contributions
print(contrib.head(6).to_string())
print(contrib.groupby("modality")["shapley"].apply(lambda s: s.abs().mean()))

# %% [markdown]
# Which pathways does the model rely on? The generator's OS pathways are cell_cycle,
# dna_repair and hypoxia (emt drives progression only; the others and `background` are noise).

# %%
print(explanation.top_groups("genomics").head(5).to_string())

# %% [markdown]
# The report sentences that moved one patient's risk the most:

# %%
spans = explanation.text_spans
pid = spans["patient_id"].iloc[0]
print(
    spans[spans["patient_id"] == pid]
    .assign(abs_attribution=lambda d: d["attribution"].abs())
    .sort_values("abs_attribution", ascending=False)[["sentence", "attribution"]]
    .head(5)
    .to_string()
)

# %% [markdown]
# ## 3. Risk groups and Kaplan-Meier curves
#
# Out-of-fold risks from the run folder; each validation patient is grouped with cut-points
# fitted on its own fold's training patients.

# %%
groups = ca.risk_groups(OUT / "run", cohort, n_groups=3)
km = ca.km_by_group(groups, horizon=36.0)
print(km[["label", "n", "events", "median_survival", "rmst", "rmst_diff", "logrank_p"]].to_string())
ax = ca.plot_km(groups)
plt.savefig(OUT / "km_by_group.png", dpi=100)
km.to_csv(OUT / "km_by_group.csv", index=False)

# %% [markdown]
# ## 4. Subgroup and fairness audit
#
# C-index with bootstrap CIs, calibration at a horizon and event rate by sex, age band, site,
# stage and modality-availability pattern. `flag` marks subgroups where the model is clearly
# worse than overall.

# %%
report = ca.subgroup_report(OUT / "run", cohort, horizon=24.0, n_boot=50, min_n=40)
print(
    report[
        ["variable", "level", "n", "c_index", "c_low", "c_high", "calibration_error", "flag"]
    ].to_string()
)
report.to_csv(OUT / "subgroups.csv", index=False)

# %% [markdown]
# ## 5. External validation
#
# A second synthetic cohort (another seed, same generator) plays the external cohort; a copy
# whose patients die twice as fast shows what calibration drift looks like: the ranking (and
# so the C-index) is unchanged, but predicted survival is now too optimistic.

# %%
external = multimodal.Cohort.load(
    generate_cohort(
        OUT / "external", n_patients=N_PATIENTS // 2, seed=1, with_images=False, n_genes=60
    ).manifest_path
)
validation = ca.external_validation(model, external, horizons=[12.0, 24.0], n_boot=50)
print(validation.to_string())

faster = external.subset(external.patients.index)
faster.patients = faster.patients.assign(time=faster.patients["time"] / 2)
drifted = ca.external_validation(model, faster, horizons=[12.0, 24.0], n_boot=50)
print(drifted[drifted["cohort"] == "drift"].to_string())

# %% [markdown]
# ## 6. TCGA: train on LUAD, validate on LUSC
#
# Clinical covariates and the genomic table of the TCGA folders (`../shared/data/tcga`), a
# quick two-fold model; skipped when the data are not there.

# %%
TCGA = os.environ.get("TUTORIAL_TCGA", "../shared/data/tcga")  # relative to the repository
if TCGA and (Path(TCGA) / "luad").is_dir() and (Path(TCGA) / "lusc").is_dir():
    TCGA = Path(TCGA)
    luad = multimodal.Cohort.load(TCGA / "luad")
    lusc = multimodal.Cohort.load(TCGA / "lusc")
    tcga_config = {
        "data": {"folds": 2, "modalities": ["clinical", "genomics"], "genomics_max_features": 200},
        "encoders": {
            "clinical": {"name": "clinical_mlp", "out_dim": 8},
            "genomics": {"name": "snn", "out_dim": 8, "options": {"hidden": 32, "dropout": 0.3}},
        },
        "fusion": {"name": "attention_gated", "dim": 8},
        "train": {
            "epochs": EPOCHS,
            "batch_size": 128,
            "lr": 0.003,
            "progress": False,
            "refit": False,
        },
        "eval": {"n_times": 6, "bootstrap": 0, "horizons": [12.0, 36.0]},
    }
    tcga_result = multimodal.train(tcga_config, cohort=luad, out=OUT / "luad")
    print(f"LUAD cross-validated C-index: {tcga_result.c_index:.3f}")
    luad_model = multimodal.load_run(OUT / "luad")
    tcga_validation = ca.external_validation(
        luad_model, lusc, horizons=[12.0, 36.0], n_boot=50, names=("LUAD", "LUSC")
    )
    print(tcga_validation.to_string())
    tcga_validation.to_csv(OUT / "luad_to_lusc.csv", index=False)
else:
    print(f"TCGA folders not found under {TCGA}: skipping the TCGA part")
