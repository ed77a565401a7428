"""Where ours loses against the truth on the TCGA-layout synthetic cohort: one part at a time.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_synthetic_parts.py runs/synth_seeds/s2/cohort_n1000_seed2 [...]

Starting from the Cox model told the true form (``bench/tcga_synthetic.py``'s reference row:
age, sex, recorded stage, the acting genomic columns and the stage III/IV products of the
signature genes, the report findings), each row replaces one part by what a model must learn it
from, and refits on each fold's training patients (scikit-survival's ridge Cox, columns z-scored
on them):

- *findings -> report words*: the findings are replaced by the structured reports' lexical
  features (:class:`~multimodal.data.lexical.LexicalVectorizer`, 1,000 terms, as
  ``configs/tcga.yaml``), ridge-penalised with ``alpha``;
- *acting columns -> every genomic column*: the acting columns and products are replaced by every
  genomic column (ridge ``alpha``) and the 5 leading principal components of the genomic table times
  each stage level (ridge 10), as ``members.interactions`` builds them.

Each row is given for a grid of ``alpha`` (scikit-survival's scale: half the L2 penalty on the
summed partial log-likelihood), all printed: nothing is chosen here, and the best of a grid read
off validation patients is an optimistic figure. Harrell's C on the validation patients, mean over
the 5 folds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from tcga_synthetic import oracle_design

from multimodal.data.lexical import LexicalVectorizer
from multimodal.data.synth_tcga import SPLIT_NAME
from multimodal.survival.metrics import harrell_c

FINDINGS = [
    "no report",
    "lvi",
    "margin positive",
    "moderately differentiated",
    "poorly differentiated",
    "necrosis",
]
ALPHAS = (100.0, 300.0, 1000.0, 3000.0)


def _z(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    sd = train.std(axis=0)
    return (x - train.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _fit_predict(blocks, tr: np.ndarray, va: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ridge Cox on the z-scored ``blocks`` ((matrix, alpha) pairs) fitted on rows ``tr``; the
    risks of rows ``va``."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    x = np.hstack([_z(b[tr], b) for b, _ in blocks])
    pen = np.concatenate([np.full(b.shape[1], a) for b, a in blocks])
    model = CoxPHSurvivalAnalysis(alpha=pen, ties="efron").fit(x[tr], y)
    return model.predict(x[va])


def parts_table(data: Path, alphas: tuple[float, ...] = ALPHAS) -> pd.DataFrame:
    """One row per (design, alpha): the mean and SD over folds of Harrell's C."""
    from sksurv.util import Surv

    design = oracle_design(data)
    clinical = pd.read_csv(data / "clinical.csv").set_index("patient_id").loc[design.index]
    genomics = pd.read_csv(data / "genomics.csv.gz").set_index("patient_id").loc[design.index]
    reports = pd.read_csv(data / "reports_structured.csv").set_index("patient_id")
    reports = reports.loc[reports.index.isin(design.index), "text_structured"]
    has_text = design.index.isin(reports.index)
    texts = [str(reports[p]) if has else "" for p, has in zip(design.index, has_text, strict=True)]
    time = clinical["survival_months"].to_numpy(float)
    event = clinical["event"].to_numpy(bool)
    acting = [c for c in design.columns if c.endswith(("_rnaseq", "_cnv", "_mut", "*III/IV"))]
    base = design.drop(columns=acting + FINDINGS)
    # every stage level, the reference one too, as members.interactions builds the products
    others = base.filter(like="stage=").to_numpy()
    stages = np.hstack([1.0 - others.sum(axis=1, keepdims=True), others])
    clin, true_g, found = base.to_numpy(), design[acting].to_numpy(), design[FINDINGS].to_numpy()
    scores: dict[tuple[str, float | None], list[float]] = {}
    for k in range(5):
        split = pd.read_csv(data / "splits" / SPLIT_NAME / f"fold_{k}.csv")
        split = split.set_index("patient_id")["split"].reindex(design.index)
        tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
        y = Surv.from_arrays(event=event[tr], time=time[tr])
        g = genomics.to_numpy(float)
        g = np.where(np.isnan(g), np.nanmedian(g[tr], axis=0), g)
        g = _z(g[tr], g)
        _, _, vt = np.linalg.svd(g[tr], full_matrices=False)
        pcs = g @ vt[:5].T
        pcs = pcs / pcs[tr].std(axis=0)
        products = np.hstack([pcs * stages[:, [j]] for j in range(stages.shape[1])])
        vec = LexicalVectorizer(max_terms=1000, min_df=5).fit([texts[i] for i in tr if has_text[i]])
        words = vec.transform(texts) * has_text[:, None]
        runs = [("told the true form", [(clin, 0.1), (true_g, 0.1), (found, 0.1)], None)]
        for a in alphas:
            runs.append(("findings -> report words", [(clin, 0.1), (true_g, 0.1), (words, a)], a))
            runs.append(
                (
                    "acting columns -> every genomic column",
                    [(clin, 0.1), (g, a), (products, 10.0), (found, 0.1)],
                    a,
                )
            )
        for name, blocks, alpha in runs:
            risk = _fit_predict(blocks, tr, va, y)
            scores.setdefault((name, alpha), []).append(harrell_c(time[va], event[va], risk))
    rows = [
        {
            "design": name,
            "alpha": "" if alpha is None else f"{alpha:g}",
            "C": float(np.mean(cs)),
            "SD": float(np.std(cs, ddof=1)),
        }
        for (name, alpha), cs in scores.items()
    ]
    order = {name: i for i, name in enumerate(dict.fromkeys(name for name, _ in scores))}
    return pd.DataFrame(rows).sort_values("design", key=lambda d: d.map(order), kind="stable")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cohorts", nargs="+", type=Path, help="folders written by tcga_synthetic.py")
    args = ap.parse_args(argv)
    for data in args.cohorts:
        table = parts_table(data)
        print(f"\n{data}\n")
        print("| design | alpha | C | SD |\n|:--|--:|--:|--:|")
        for r in table.itertuples():
            print(f"| {r.design} | {r.alpha} | {r.C:.4f} | {r.SD:.4f} |")
    return 0


if __name__ == "__main__":  # python puts bench/ on sys.path: tcga_synthetic imports from there
    raise SystemExit(main())
