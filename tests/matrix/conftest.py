"""The config matrix: every training config, trained once on a tiny cohort it can run on.

Training configs are every ``configs/*.yaml`` (found with a glob, so a new file joins the matrix by
itself) plus the ``best.yaml`` that a tiny ``multimodal tune`` over ``configs/tune/tiny.yaml``
writes. ``configs/tune/*.yaml`` are search spaces, not training configs.

Each config is shrunk only through ``--set`` overrides that keep its structure (encoders, fusion,
members, head): fewer epochs and patients, one fold, smaller images and genomic tables. The
members (linear terms, their penalties and how they combine) are never overridden: the shipped
settings are what the matrix tests.
"""

from __future__ import annotations

import gzip
import json
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner, Result

from multimodal.cli import app

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
TUNE_FILE = CONFIG_DIR / "tune" / "tiny.yaml"
BEST = "best.yaml"


def shipped_configs() -> list[str]:
    """File names of the training configs shipped in ``configs/`` (not the search spaces)."""
    return sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))


#: every training config of the matrix
TRAINING_CONFIGS = [*shipped_configs(), BEST]

#: training config -> the tiny cohort it runs on (``synthetic``: ``multimodal.data.synth``;
#: ``tcga``: a TCGA-layout folder written here). A config without an entry fails the matrix.
COHORT_FOR = {
    "demo.yaml": "synthetic",
    "tcga.yaml": "tcga",
    "longitudinal.yaml": "longitudinal",
    BEST: "synthetic",
}

#: structure-keeping shrinkage applied to every config
SHRINK = [
    "train.epochs=2",
    "train.patience=1",
    "train.progress=false",
    "data.fold_indices=[0]",
    "data.image_size=8",
    "data.genomics_max_features=40",
    "eval.bootstrap=0",
]

#: per-config overrides of what the tiny cohort's time unit demands: configs/longitudinal.yaml's
#: landmarks are years (PBC); the synthetic cohort counts months
UNITS = {
    "longitudinal.yaml": [
        "data.landmark.times=[0,6,12,18,24]",
        "data.landmark.horizon=60",
        "data.landmark.eval_times=[6,12]",
    ]
}

#: modalities a new cohort lacks, in order of preference (the first one the run uses)
DROP_ORDER = ("report", "ct", "genomics", "report_structured")

#: TCGA file of each modality (multimodal/data/tcga.py)
TCGA_FILES = {
    "genomics": "genomics.csv.gz",
    "report": "reports.csv",
    "report_structured": "reports_structured.csv",
}

runner = CliRunner()


def invoke(*args) -> Result:
    """``multimodal ARGS`` in this process, as a user types it."""
    return runner.invoke(app, [str(a) for a in args])


def describe(res: Result, lines: int = 12) -> str:
    """Exit code, output and the first lines of the traceback of a CLI call (for assertions)."""
    text = f"exit code {res.exit_code}\n{res.output[-3000:]}"
    if res.exc_info is not None and not isinstance(res.exception, SystemExit):
        tb = "".join(traceback.format_exception(*res.exc_info)).splitlines()
        text += "\n" + "\n".join(tb[-lines:])
    return text


# --------------------------------------------------------------------------------- cohorts
@dataclass
class TinyCohort:
    """A cohort on disk: ``path`` is what ``--cohort`` takes; ``kind`` is synthetic or tcga."""

    kind: str
    path: Path

    def without(self, modality: str, dest: Path) -> Path:
        """The same patients lacking ``modality``; returns the new ``--cohort`` path."""
        if self.kind == "tcga":
            shutil.copytree(self.path, dest, ignore=shutil.ignore_patterns("splits"))
            (dest / TCGA_FILES[modality]).unlink()
            return dest
        manifest = yaml.safe_load(self.path.read_text())
        del manifest["modalities"][modality]
        out = self.path.parent / f"cohort_without_{modality}.yaml"  # paths stay relative
        out.write_text(yaml.safe_dump(manifest, sort_keys=False))
        return out


def write_synthetic(root: Path, seed: int) -> TinyCohort:
    """48 patients: clinical, genomics (40 genes in pathways), report text, 8^3 CT volumes."""
    from multimodal.data.synth import generate_cohort

    res = generate_cohort(root, n_patients=48, seed=seed, image_size=8, n_genes=40)
    return TinyCohort("synthetic", Path(res.manifest_path))


SENTENCES = {
    "high": [
        "Poorly differentiated carcinoma, grade 3.",
        "Lymphovascular invasion is present.",
        "The surgical margin is involved by tumour.",
    ],
    "low": [
        "Well differentiated carcinoma, grade 1.",
        "No lymphovascular invasion is seen.",
        "Margins are free of tumour.",
    ],
    "filler": [
        "The specimen was received in formalin.",
        "Sections were reviewed at the consensus conference.",
    ],
}


def write_tcga(root: Path, seed: int, prefix: str = "TCGA-XX", n: int = 50) -> TinyCohort:
    """A TCGA cancer folder in the PORPOISE/MCAT layout (multimodal/data/tcga.py), ``n`` patients:
    clinical.csv, genomics.csv.gz (rna/mut/cnv), reports.csv (most patients),
    reports_structured.csv and splits/porpoise_mcat_5fold/fold_<k>.csv."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}-{i:04d}" for i in range(n)]
    stage = rng.choice(["Stage I", "Stage II", "Stage III", "Stage IV"], n)
    age = rng.integers(40, 85, n)
    genes = {
        **{f"G{j}_rnaseq": rng.normal(size=n).round(4) for j in range(24)},
        **{f"G{j}_mut": rng.integers(0, 2, n) for j in range(8)},
        **{f"G{j}_cnv": rng.integers(-2, 3, n) for j in range(8)},
    }
    risk = (
        0.6 * np.searchsorted(["Stage I", "Stage II", "Stage III", "Stage IV"], stage)
        + 0.03 * (age - 60)
        + 0.8 * genes["G0_rnaseq"]
        - 0.6 * genes["G1_rnaseq"]
    )
    time = rng.exponential(40.0 * np.exp(-risk)) + 0.5
    censor = rng.uniform(10, 120, n)
    event = (time <= censor).astype(int)
    months = np.minimum(time, censor).round(2)
    days = (months * 30.4375).round()
    clinical = pd.DataFrame(
        {
            "patient_id": ids,
            "survival_months": months,
            "event": event,
            "censorship": 1 - event,
            "age": age,
            "sex": rng.choice(["F", "M"], n),
            "tss_site": rng.choice(["AA", "BB", "CC"], n),
            "stage": [s.split()[1] for s in stage],
            "cdr_os_event": event,
            "cdr_os_days": days,
            "cdr_pfi_event": event,
            "cdr_pfi_days": days,
            "cdr_dss_event": event,
            "cdr_dss_days": days,
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    clinical.to_csv(root / "clinical.csv", index=False)
    genomics = pd.DataFrame({"patient_id": ids, **genes})
    with gzip.open(root / "genomics.csv.gz", "wt") as fh:
        genomics.to_csv(fh, index=False)

    def report(r: float) -> str:
        tone = SENTENCES["high"] if r > np.median(risk) else SENTENCES["low"]
        picked = rng.choice(len(tone), 2, replace=False)
        return " ".join([SENTENCES["filler"][0], *(tone[i] for i in picked)])

    has_raw = rng.uniform(size=n) < 0.8
    pd.DataFrame(
        {"patient_id": [p for p, h in zip(ids, has_raw) if h],
         "text": [report(r) for r, h in zip(risk, has_raw) if h],
         "source": "synthetic"}
    ).to_csv(root / "reports.csv", index=False)  # fmt: skip
    has_structured = rng.uniform(size=n) < 0.9
    pd.DataFrame(
        {"patient_id": [p for p, h in zip(ids, has_structured) if h],
         "text_structured": [
             f"Stage: {s}\nDifferentiation of the lesion: {'poor' if r > 0 else 'well'}"
             for s, r, h in zip(stage, risk, has_structured) if h],
         "in_cohort": 1}
    ).to_csv(root / "reports_structured.csv", index=False)  # fmt: skip
    split_dir = root / "splits" / "porpoise_mcat_5fold"
    split_dir.mkdir(parents=True)
    for k in range(5):
        pd.DataFrame(
            {"patient_id": ids, "split": ["val" if i % 5 == k else "train" for i in range(n)]}
        ).to_csv(split_dir / f"fold_{k}.csv", index=False)
    return TinyCohort("tcga", root)


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory) -> TinyCohort:
    return write_synthetic(tmp_path_factory.mktemp("matrix-synthetic"), seed=3)


def write_longitudinal(root: Path, seed: int) -> TinyCohort:
    """The synthetic cohort of :func:`write_synthetic` plus repeat lab measurements (``labs``)."""
    from multimodal.data.synth import generate_cohort

    res = generate_cohort(
        root, n_patients=60, seed=seed, image_size=8, n_genes=40, longitudinal=True
    )
    return TinyCohort("synthetic", Path(res.manifest_path))


@pytest.fixture(scope="session")
def longitudinal_cohort(tmp_path_factory) -> TinyCohort:
    return write_longitudinal(tmp_path_factory.mktemp("matrix-longitudinal"), seed=3)


@pytest.fixture(scope="session")
def longitudinal_new_cohort(tmp_path_factory) -> TinyCohort:
    return write_longitudinal(tmp_path_factory.mktemp("matrix-longitudinal-new"), seed=4)


@pytest.fixture(scope="session")
def synthetic_new_cohort(tmp_path_factory) -> TinyCohort:
    """Other patients of the same kind (another seed): the "new cohort" of ``predict``."""
    return write_synthetic(tmp_path_factory.mktemp("matrix-synthetic-new"), seed=4)


@pytest.fixture(scope="session")
def tcga_cohort(tmp_path_factory) -> TinyCohort:
    return write_tcga(tmp_path_factory.mktemp("matrix-tcga") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tcga_new_cohort(tmp_path_factory) -> TinyCohort:
    return write_tcga(tmp_path_factory.mktemp("matrix-tcga-new") / "tiny", seed=1, prefix="TCGA-NW")


@pytest.fixture(scope="session")
def tuned_config(synthetic_cohort, tmp_path_factory) -> tuple[Path, Result]:
    """``best.yaml`` of a two-trial ``multimodal tune`` over configs/tune/tiny.yaml, and the
    tune command's result (its ``best.yaml`` is missing when the tune failed)."""
    out = tmp_path_factory.mktemp("matrix-tune") / "tune"
    res = invoke(
        "tune", "--config", TUNE_FILE, "--cohort", synthetic_cohort.path, "--out", out,
        "--n-trials", 2,
    )  # fmt: skip
    return out / "best.yaml", res


# --------------------------------------------------------------------------------- runs
@dataclass
class MatrixRun:
    """One training config trained (``multimodal train``) on its tiny cohort, one fold."""

    name: str
    config: Path
    cohort: TinyCohort
    new_cohort: TinyCohort
    dir: Path
    train: Result
    overrides: list[str] = field(default_factory=list)
    step: str = "train"
    """The command ``train`` is the result of: ``train``, or ``tune`` when the tune that writes
    best.yaml failed (then nothing was trained)."""

    def train_failure(self) -> str:
        return f"`multimodal {self.step}` for {self.name} failed:\n{describe(self.train)}"

    def require_trained(self) -> None:
        """Fail (not error) a consumer's test when training itself failed."""
        if self.step != "train" or self.train.exit_code != 0:
            pytest.fail(self.train_failure())

    @property
    def modalities(self) -> list[str]:
        """The modalities the run used (metrics.json)."""
        return list(json.loads((self.dir / "metrics.json").read_text())["modalities"])

    def predictions(self) -> pd.DataFrame:
        return pd.read_csv(self.dir / "predictions.csv", dtype={"patient_id": str})

    def complete_val_patients(self, k: int = 2) -> list[str]:
        """``k`` validation patients of fold 0 who have every modality the run used."""
        from multimodal.data.cohort import Cohort

        preds = self.predictions()
        owner = "landmark_patient" if "landmark_patient" in preds else "patient_id"
        val = preds.loc[preds["split"] == "val", owner].drop_duplicates().tolist()
        avail = Cohort.load(self.cohort.path).availability()[self.modalities]
        ids = [p for p in val if bool(avail.loc[p].all())]
        assert len(ids) >= k, f"only {len(ids)} validation patients have {self.modalities}"
        return ids[:k]

    def dropped_modality(self) -> str:
        """The modality the new cohort lacks: one the run used (never clinical) when it can."""
        used = [m for m in DROP_ORDER if m in self.modalities]
        return used[0] if used else "genomics"  # a clinical-only run: a modality it ignores


def cohort_kind(config_name: str) -> str:
    if config_name not in COHORT_FOR:
        pytest.fail(
            f"configs/{config_name} has no cohort in the config matrix: add it to COHORT_FOR in "
            f"{Path(__file__).relative_to(ROOT)} (one of {sorted(set(COHORT_FOR.values()))}, or "
            "a new tiny cohort writer)"
        )
    return COHORT_FOR[config_name]


def shrink(config: Path) -> list[str]:
    """The ``--set`` overrides for ``config``: :data:`SHRINK`, plus two generated folds unless
    the config uses a published split (whose fold files stay as they are)."""
    raw = yaml.safe_load(config.read_text()) or {}
    split = (raw.get("data") or {}).get("split")
    return [*SHRINK, *([] if split else ["data.folds=2"]), *UNITS.get(config.name, [])]


@pytest.fixture(scope="module", params=TRAINING_CONFIGS)
def run(request, tmp_path_factory) -> MatrixRun:
    """Train ``request.param`` once (per test module) with ``multimodal train``."""
    name = request.param
    kind = cohort_kind(name)
    cohort = request.getfixturevalue(f"{kind}_cohort")
    new_cohort = request.getfixturevalue(f"{kind}_new_cohort")
    out = tmp_path_factory.mktemp(f"matrix-run-{Path(name).stem}") / "run"
    config = CONFIG_DIR / name
    if name == BEST:
        config, tuned = request.getfixturevalue("tuned_config")
        if tuned.exit_code != 0 or not config.is_file():
            return MatrixRun(name, config, cohort, new_cohort, out, tuned, step="tune")
    sets = shrink(config)
    args = ["train", "--config", config, "--cohort", cohort.path, "--out", out]
    res = invoke(*args, *[a for s in sets for a in ("--set", s)])
    return MatrixRun(name, config, cohort, new_cohort, out, res, sets)


@pytest.fixture(scope="session")
def cli():
    """``cli.invoke(*args)`` runs ``multimodal ARGS``; ``cli.describe(result)`` explains a failure."""
    return SimpleNamespace(invoke=invoke, describe=describe)


@pytest.fixture(scope="session")
def matrix():
    """What the matrix covers: ``training_configs`` and ``cohort_for`` (config -> cohort kind)."""
    return SimpleNamespace(training_configs=list(TRAINING_CONFIGS), cohort_for=dict(COHORT_FOR))
