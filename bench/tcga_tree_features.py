"""Which genes should the tree members see? A diagnostic on training patients only.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_tree_features.py --inner runs/inner_cv6 \
        --cancers skcm paad gbmlgg kirp hnsc

Reads the sub-cohorts that ``bench/tcga_inner_cv.py`` wrote (``INNER/<cancer>/cohort``: the
training patients of one published fold) and, on 5 stratified folds of them (seed 0), fits a
random survival forest (200 trees, leaves >= 15, "sqrt" features; also on half-size bootstrap
samples) and gradient-boosted Cox trees (the tree members' defaults) on age, sex and stage with:

- no genes (``clin``);
- the 100 genes with the largest training variance (``var100``, as the RSF baseline);
- the 50 of the 1,000 largest-variance genes with the largest univariate Cox score (``cox50``,
  the tree members' default selection);
- the 50 of all genomic columns with the largest univariate Cox score (``coxall50``).

Every choice of genes is made on each fold's fitting patients. Prints the mean Harrell's C over
the folds per cohort, feature set and model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
from sksurv.util import Surv

from multimodal.models.tree_terms import univariate_cox_scores
from multimodal.models.trees import TREE_DEFAULTS
from multimodal.survival.metrics import harrell_c

ROOT = Path(__file__).resolve().parents[1]


def clinical_design(df: pd.DataFrame) -> pd.DataFrame:
    """Age (median-filled) and one-hot sex and stage ("missing" a level of its own)."""
    x = pd.DataFrame({"age": df.age.fillna(df.age.median())}, index=df.index)
    for col in ("sex", "stage"):
        if col in df:
            levels = df[col].fillna("missing").astype(str)
            x = x.join(pd.get_dummies(levels, prefix=col).astype(float))
    return x


def models(seed: int = 0) -> dict:
    boosting = dict(TREE_DEFAULTS["boosting"])
    forest = {"n_estimators": 200, "min_samples_leaf": 15, "max_features": "sqrt"}
    return {
        "rsf": lambda: RandomSurvivalForest(**forest, n_jobs=1, random_state=seed),
        "rsf_half": lambda: RandomSurvivalForest(
            **forest, max_samples=0.5, n_jobs=1, random_state=seed
        ),
        "boosting": lambda: GradientBoostingSurvivalAnalysis(**boosting, random_state=seed),
    }


def score(cohort: Path) -> dict[tuple[str, str], float]:
    clinical = pd.read_csv(cohort / "clinical.csv").set_index("patient_id")
    genes = pd.read_csv(cohort / "genomics.csv.gz").set_index("patient_id")
    genes = genes.reindex(clinical.index).select_dtypes("number")
    t = clinical.survival_months.to_numpy(float)
    e = clinical.event.to_numpy() == 1
    x_clin = clinical_design(clinical)
    found: dict[tuple[str, str], list[float]] = {}
    folds = StratifiedKFold(5, shuffle=True, random_state=0).split(x_clin, e)
    for fit, held in folds:
        g_fit = genes.iloc[fit]
        var = g_fit.var().fillna(0.0).sort_values(ascending=False)
        top1000, top100 = list(var.index[:1000]), list(var.index[:100])
        z = (genes[top1000] - g_fit[top1000].median()).fillna(0.0)
        z = z / g_fit[top1000].std().replace(0, 1.0)
        cox = univariate_cox_scores(z.iloc[fit].to_numpy(), t[fit], e[fit])
        cox50 = [top1000[i] for i in np.argsort(-cox)[:50]]
        z_all = ((genes - g_fit.mean()) / g_fit.std().replace(0, 1.0)).fillna(0.0)
        cox_all = univariate_cox_scores(z_all.iloc[fit].to_numpy(), t[fit], e[fit])
        coxall50 = [genes.columns[i] for i in np.argsort(-cox_all)[:50]]
        designs = {
            "clin": x_clin,
            "var100": x_clin.join(genes[top100].fillna(g_fit[top100].median())),
            "cox50": x_clin.join(z[cox50]),
            "coxall50": x_clin.join(genes[coxall50].fillna(g_fit[coxall50].median())),
        }
        y = Surv.from_arrays(e[fit], t[fit])
        for name, x in designs.items():
            for kind, make in models().items():
                model = make().fit(x.iloc[fit].to_numpy(), y)
                risk = model.predict(x.iloc[held].to_numpy())
                found.setdefault((name, kind), []).append(harrell_c(t[held], e[held], risk))
    return {key: float(np.mean(v)) for key, v in found.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inner", type=Path, default=ROOT / "runs" / "inner_cv6")
    ap.add_argument("--cancers", nargs="+", default=["skcm", "paad", "gbmlgg", "kirp", "hnsc"])
    args = ap.parse_args(argv)
    print("| cohort | model | clin | var100 | cox50 | coxall50 |")
    print("|:--|:--|--:|--:|--:|--:|")
    for cancer in args.cancers:
        result = score(args.inner / cancer / "cohort")
        for kind in models():
            cells = " | ".join(
                f"{result[(s, kind)]:.3f}" for s in ("clin", "var100", "cox50", "coxall50")
            )
            print(f"| {cancer.upper()} | {kind} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
