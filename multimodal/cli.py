"""Command line: thin wrappers over library functions.

    multimodal synth --out DIR --n-patients N --seed S [--longitudinal [--n-markers K]]
    multimodal synth --layout tcga --out DIR [--n-patients N] [--seed S]
    multimodal validate MANIFEST_OR_TCGA_FOLDER [--all-files] [--sample N]
    multimodal train --config CONFIG [--cohort PATH] [--out RUN_DIR] [--set key=value ...]
    multimodal evaluate RUN_DIR
    multimodal predict RUN_DIR --cohort MANIFEST --out CSV [--strict]
    multimodal tune --config TUNE_YAML --out RUN_DIR [--cohort PATH] [--storage URL] --n-trials N
    multimodal demo [--out DIR]
    multimodal dashboard RUN_DIR [--port P] [--host 127.0.0.1] [--cohort PATH] [--password-file F]
    multimodal report RUN_DIR [--out report.html] [--cohort PATH] [--no-robustness]

Errors on user input print one clear message (no traceback) and exit non-zero.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Literal

import typer

from multimodal.exceptions import MultimodalError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Multimodal survival and progression modelling (imaging, genomics, text, clinical).",
)

log = logging.getLogger("multimodal")


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"  # torchrun: only rank 0 reports


def _setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level if _is_main_process() else logging.WARNING,
        format="%(message)s" if not verbose else "%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("transformers", "monai", "urllib3", "filelock", "matplotlib", "PIL", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _friendly(fn):
    """Turn package errors into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MultimodalError as exc:
            # one "error:" line per problem (a loader reports all it found, one per line)
            lines = [line for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
            for line in lines:
                typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho(
                "interrupted: progress is checkpointed; run the same command again to resume",
                err=True,
            )
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    _setup_logging(verbose)


@app.command()
@_friendly
def version() -> None:
    """Print the package version."""
    from multimodal._version import __version__

    typer.echo(__version__)


@app.command()
@_friendly
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the cohort into."),
    layout: Literal["demo", "tcga"] = typer.Option(
        "demo",
        "--layout",
        help="demo: manifest cohort with images; tcga: the TCGA folder layout (clinical.csv, "
        "genomics.csv.gz, reports, published-style folds, truth.csv); the options below "
        "--seed apply to demo only.",
    ),
    n_patients: int | None = typer.Option(
        None, "--n-patients", min=10, help="Default 500 (demo), 600 (tcga)."
    ),
    seed: int = typer.Option(0, "--seed"),
    missing_rate: float = typer.Option(0.2, "--missing-rate", min=0.0, max=0.95),
    image_size: int = typer.Option(64, "--image-size", min=8),
    spatial_dims: int = typer.Option(3, "--spatial-dims", min=2, max=3),
    feature_bags: bool = typer.Option(
        False, "--feature-bags", help="Also write bags of patch features."
    ),
    longitudinal: bool = typer.Option(
        False,
        "--longitudinal",
        help="Also write repeat biomarker measurements (modality 'labs') whose true trajectories "
        "drive the hazard of death.",
    ),
    n_markers: int = typer.Option(
        3, "--n-markers", min=2, max=4, help="Biomarkers with --longitudinal (2-4)."
    ),
) -> None:
    """Write a synthetic multimodal cohort (manifest + files + ground_truth.csv)."""
    if layout == "tcga":
        from multimodal.data.synth_tcga import write_tcga_cohort

        folder = write_tcga_cohort(out, n_patients=n_patients or 600, seed=seed)
        typer.echo(f"wrote {folder} (TCGA layout, {n_patients or 600} patients; truth.csv)")
        typer.echo(
            f"train: multimodal train --config configs/tcga.yaml --cohort {folder} --out runs/x"
        )
        return
    from multimodal.data.synth import generate_cohort

    n_patients = n_patients or 500
    res = generate_cohort(
        out,
        n_patients=n_patients,
        seed=seed,
        missing_rate=missing_rate,
        image_size=image_size,
        spatial_dims=spatial_dims,
        with_feature_bags=feature_bags,
        longitudinal=longitudinal,
        n_markers=n_markers,
    )
    typer.echo(f"wrote {res.manifest_path} ({n_patients} patients)")


@app.command()
@_friendly
def validate(
    path: Path = typer.Argument(..., help="Cohort manifest or TCGA-style folder."),
    all_files: bool = typer.Option(
        False, "--all-files", help="Decode every image and feature bag (default: a sample)."
    ),
    sample: int = typer.Option(
        20, "--sample", min=0, help="Images / bags decoded per modality without --all-files."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample of files decoded."),
    new_patients: bool = typer.Option(
        False,
        "--new-patients",
        help="Patients to predict: time/event are not required (as for multimodal predict).",
    ),
) -> None:
    """Check a cohort; print errors (one per line) and the per-modality coverage table.

    Exit code 0 when there is no error (warnings allowed), 2 otherwise.
    """
    from multimodal.data.validate import validate as run_validate

    report = run_validate(
        path,
        check_all_files=all_files,
        sample=sample,
        seed=seed,
        require_outcomes=not new_patients,
    )
    for w in report.warnings:
        typer.echo(f"warning: {w}", err=True)
    for e in report.errors:
        typer.echo(f"error: {e}")
    for name, (done, total) in report.decoded.items():
        if done < total:
            typer.echo(
                f"note: decoded {done} of {total} files of modality {name!r} "
                "(every file's header was checked; --all-files decodes all)",
                err=True,
            )
    if report.coverage is not None and len(report.coverage):
        typer.echo(report.coverage.to_string())
    if not new_patients and any("required column 'time' is missing" in e for e in report.errors):
        typer.echo(
            "note: patients to predict need no time/event: check them with --new-patients",
            err=True,
        )
    if not report.ok:
        raise typer.Exit(2)
    typer.echo(f"OK: {report.n_patients} patients")


@app.command()
@_friendly
def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config (see configs/)."),
    cohort: str | None = typer.Option(None, "--cohort", help="Manifest or TCGA folder."),
    out: Path | None = typer.Option(None, "--out", help="Run folder."),
    overrides: list[str] = typer.Option([], "--set", help="Override: key.sub=value (repeatable)."),
    force: bool = typer.Option(
        False, "--force", help="Start over in an existing run folder (its results are deleted)."
    ),
) -> None:
    """Train and cross-validate a model; writes metrics.json, predictions.csv, model/.

    Re-running the same command resumes an interrupted run; a run folder trained under another
    config or cohort is refused (use a new --out, or --force)."""
    from multimodal.training.trainer import train as run_train

    if cohort:
        overrides = [*overrides, f"data.cohort={cohort}"]
    result = run_train(config, out=out, overrides=list(overrides), force=force)
    if not _is_main_process():
        return
    m = result.metrics
    typer.echo(_metrics_line(m))
    typer.echo(f"run folder: {result.run_dir}")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _metrics_line(m: dict) -> str:
    n = len(m.get("folds", []))
    # the SD over one fold is undefined (metrics.json holds 0): the mean alone, "(1 fold)"
    sd = m.get("c_index_std") if n > 1 else None
    std = f" ± {sd:.4f}" if sd is not None else ""
    line = (
        f"validation C-index {_fmt(m.get('c_index'))}{std} | Uno's C {_fmt(m.get('uno_c'))} | "
        f"IBS {_fmt(m.get('ibs'))} | td-AUC {_fmt(m.get('td_auc'))} "
        f"({n} fold{'' if n == 1 else 's'})"
    )
    # progression endpoints: one C-index per endpoint / cause (c_index_os, c_index_progression, ...)
    names = ("os", "pfs", "progression", "death")
    per = [f"{n} {_fmt(m[f'c_index_{n}'])}" for n in names if f"c_index_{n}_std" in m]
    return line + ("\nC-index per endpoint: " + ", ".join(per) if per else "")


@app.command()
@_friendly
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run folder written by `multimodal train`."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap replicates for CIs."),
) -> None:
    """Recompute validation metrics (with bootstrap CIs) from a run's predictions."""
    from multimodal.evaluation.report import evaluate_run
    from multimodal.runfolder import RunFolder

    metrics = evaluate_run(run_dir, n_boot=bootstrap)
    typer.echo(_metrics_line(metrics))
    for f in metrics["folds"]:
        ci = f.get("c_index_ci")
        ci_s = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        typer.echo(f"  fold {f['fold']}: C-index {f['c_index']:.4f}{ci_s}, n_val {f.get('n_val')}")
    typer.echo(f"wrote {RunFolder(run_dir).metrics_path}")


@app.command()
@_friendly
def predict(
    run_dir: Path = typer.Argument(..., help="Run folder written by `multimodal train`."),
    cohort: str = typer.Option(..., "--cohort", help="Manifest or TCGA folder of the patients."),
    out: Path = typer.Option(..., "--out", help="CSV to write."),
    times: str | None = typer.Option(None, "--times", help="Comma-separated times for S(t)."),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Predict from the finished folds of an interrupted run."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Fail (exit 2, nothing written) when any patient's inputs have a warning or error.",
    ),
    landmark: str | None = typer.Option(
        None,
        "--landmark",
        help="Landmark models: predict from what was measured up to this time, for patients "
        "alive then (times count from it); 'last' (default): each patient's latest visit.",
    ),
) -> None:
    """Predict risk, survival curves and median survival for a (new) cohort.

    The patients need no follow-up (time/event). Inputs are checked against what the model was
    trained on: patients with an error (non-finite or implausible values, renamed columns, ...)
    are refused (NaN predictions); the file's status and input_issues columns say why.
    """
    from multimodal.data.cohort import Cohort
    from multimodal.models.input_checks import status_summary
    from multimodal.models.run import load_run

    model = load_run(run_dir, allow_partial=allow_partial)
    try:
        grid = [float(t) for t in times.split(",")] if times else None
    except ValueError:
        raise typer.BadParameter(
            f"--times {times!r}: give comma-separated numbers, e.g. 12,36,60"
        ) from None
    try:
        at = landmark if landmark in (None, "last") else float(landmark)
    except ValueError:
        raise typer.BadParameter(f"--landmark {landmark!r}: give a time or 'last'") from None
    frame = model.predict(
        Cohort.load_for_run(cohort, model.config, require_outcomes=False),
        grid,
        strict=strict,
        landmark=at,
    )
    typer.echo(status_summary(frame["status"]))
    for status, shown in (("refused", 5), ("warning", 3)):
        rows = frame.loc[frame["status"] == status, "input_issues"]
        first = list(dict.fromkeys(text.split(" | ")[0] for text in rows))  # distinct, in order
        for message in first[:shown]:
            typer.echo(f"  {status}: {message}")
        if len(first) > shown:
            typer.echo(f"  ... {len(rows)} patient(s) {status} in all: see the input_issues column")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    typer.echo(f"wrote {out} ({len(frame)} patients)")


@app.command()
@_friendly
def explain(
    run_dir: Path = typer.Argument(..., help="Run folder written by `multimodal train`."),
    cohort: str = typer.Option(..., "--cohort", help="Manifest or TCGA folder of the patients."),
    patients: str | None = typer.Option(
        None, "--patients", help="Comma-separated patient ids (default: every patient)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder to write (default: RUN_DIR/explanations)."
    ),
    saliency_limit: int = typer.Option(
        20, "--saliency-limit", help="Images explained by occlusion per modality (0 = none)."
    ),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Explain with the finished folds of an interrupted run."
    ),
) -> None:
    """Explain predictions: modality contributions, feature/text attributions, image saliency."""
    from multimodal.data.cohort import Cohort
    from multimodal.models.run import load_run
    from multimodal.runfolder import RunFolder

    model = load_run(run_dir, allow_partial=allow_partial)
    ids = [p.strip() for p in patients.split(",") if p.strip()] if patients else None
    explanation = model.explain(
        Cohort.load_for_run(cohort, model.config),
        patient_ids=ids,
        saliency_limit=saliency_limit,
    )
    folder = explanation.save(out or RunFolder(run_dir).explanations_dir)
    n = explanation.meta["n_patients"]
    typer.echo(f"wrote {folder} ({n} patients; {', '.join(explanation.meta['methods'])})")


@app.command()
@_friendly
def tune(
    config: Path = typer.Option(..., "--config", "-c", help="Tuning YAML (see configs/tune/)."),
    out: Path = typer.Option(..., "--out", help="Run folder: study.db, best.yaml, summary."),
    cohort: str | None = typer.Option(None, "--cohort", help="Manifest or TCGA folder."),
    n_trials: int | None = typer.Option(
        None, "--n-trials", min=1, help="Trials the study should end with (all workers, all runs)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Seconds after which this worker starts no new trial."
    ),
    n_jobs: int = typer.Option(1, "--n-jobs", min=1, help="Parallel trials in this process."),
    storage: str | None = typer.Option(
        None, "--storage", help="Shared study database, e.g. postgresql://user:pw@host/db."
    ),
    study_name: str | None = typer.Option(None, "--study-name", help="Default: the file name."),
    outer_fold: int | None = typer.Option(
        None, "--outer-fold", min=0, help="Tune on the training part of this outer fold."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a base-config key=value."),
    pruner: str | None = typer.Option(
        None, "--pruner", help="median, hyperband or none (default: the tuning file's)."
    ),
) -> None:
    """Optuna search over a tuning file; re-run the same command to resume the study."""
    import optuna

    from multimodal.tuning import tune as run_tune

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial comes from us
    for name in ("multimodal.training", "multimodal.data"):
        logging.getLogger(name).setLevel(logging.WARNING)  # per-fold lines of every trial
    result = run_tune(
        config,
        out=out,
        cohort=cohort,
        n_trials=n_trials,
        timeout=timeout,
        n_jobs=n_jobs,
        storage=storage,
        study_name=study_name,
        outer_fold=outer_fold,
        overrides=list(overrides),
        pruner=pruner,
        progress=typer.echo,
    )
    c = result.counts
    typer.echo(
        f"{c.complete} complete, {c.pruned} pruned, {c.failed} failed"
        + (f", {c.running} still running elsewhere" if c.running else "")
    )
    if result.best_config is None:
        typer.secho("no trial completed: see trials.csv for the errors", err=True)
        raise typer.Exit(1)
    typer.echo(f"best {result.best_value} -> {out / 'best.yaml'}")
    typer.echo(f"summary: {out / 'summary.json'}, {out / 'history.png'}")


@app.command()
@_friendly
def dashboard(
    run_dir: Path = typer.Argument(..., help="Run folder written by `multimodal train`."),
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; anything but loopback exposes patient data."
    ),
    cohort: str | None = typer.Option(
        None, "--cohort", help="The run's cohort, when not where the run config says."
    ),
    password_file: Path | None = typer.Option(
        None,
        "--password-file",
        help="File whose first line is the password (or set MULTIMODAL_DASHBOARD_PASSWORD).",
    ),
) -> None:
    """Serve the Streamlit dashboard over a trained run (reads artefacts only, never trains)."""
    import os

    from multimodal.dashboard.launch import (
        ENV_PASSWORD,
        LOOPBACK,
        dashboard_env,
        read_password_file,
        serve,
        streamlit_command,
    )

    if not run_dir.exists():
        raise MultimodalError(f"run folder {run_dir} does not exist")
    password = read_password_file(password_file) if password_file else os.environ.get(ENV_PASSWORD)
    if host not in LOOPBACK and not password:
        typer.secho(
            f"warning: serving on {host} without a password; anyone who can reach this machine "
            "can see the patients (use --password-file)",
            err=True,
            fg=typer.colors.YELLOW,
        )
    argv = streamlit_command(host, port)
    typer.echo(f"dashboard on http://{host}:{port} (Ctrl-C to stop)")
    # SIGTERM, SIGINT and SIGHUP stop the server too; we exit with its status
    code = serve(argv, env=dashboard_env(run_dir, cohort, password))
    if code:
        raise typer.Exit(code)


@app.command()
@_friendly
def benchmark(
    data: Path = typer.Option(..., "--data", help="Cohort: a TCGA cancer folder or a manifest."),
    out: Path = typer.Option(..., "--out", help="Output folder (results.csv, summary.md, runs/)."),
    config: Path | None = typer.Option(
        None, "--config", help="Config of our models (default configs/tcga.yaml)."
    ),
    folds: str = typer.Option(
        "porpoise_mcat_5fold", "--folds", help="Split name under DATA/splits/, or a folder."
    ),
    fold: list[int] = typer.Option([], "--fold", help="Only these fold numbers (repeatable)."),
    models: list[str] = typer.Option(
        [], "--model", help="Only these of our variants (repeatable; default: all that apply)."
    ),
    baselines: str = typer.Option(
        "clinical_cox,coxnet,rsf", "--baselines", help="Comma-separated; '' for none."
    ),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Resamples for the C-index CI."),
    overrides: list[str] = typer.Option([], "--set", help="Override: key.sub=value (repeatable)."),
) -> None:
    """Our fusion models and the classical baselines on the same folds, scored alike."""
    from multimodal.evaluation.benchmark import DEFAULT_VARIANTS, run_benchmark

    unknown = [m for m in models if m not in DEFAULT_VARIANTS]
    if unknown:
        raise typer.BadParameter(
            f"unknown model(s) {unknown}; choose from {list(DEFAULT_VARIANTS)}"
        )
    variants = {m: DEFAULT_VARIANTS[m] for m in models} if models else None
    result = run_benchmark(
        data,
        out,
        config=config,
        folds=folds,
        fold_indices=fold or None,
        variants=variants,
        baselines=tuple(b for b in baselines.split(",") if b.strip()),
        overrides=overrides,
        n_boot=bootstrap,
    )
    from multimodal.evaluation.benchmark import cohort_name, summary_markdown

    typer.echo(summary_markdown(result.summary, cohort_name(data)))
    typer.echo(f"wrote {result.out / 'results.csv'} and {result.out / 'summary.md'}")


@app.command()
@_friendly
def demo(
    out: Path = typer.Option(
        Path("runs/demo"), "--out", help="Folder for the cohort and the runs."
    ),
    n_patients: int = typer.Option(500, "--n-patients", min=50),
    config: Path | None = typer.Option(
        None, "--config", help="Config of the models (default: the shipped configs/demo.yaml)."
    ),
    compare: bool = typer.Option(
        True, "--compare/--no-compare", help="Also train single-modality models."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override: key.sub=value (repeatable)."),
) -> None:
    """The main job on built-in data: synthesise a cohort, validate, train fusion, compare."""
    from multimodal.demo import run_demo

    summary = run_demo(
        out, n_patients=n_patients, config=config, compare=compare, overrides=list(overrides)
    )
    typer.echo(summary.table())
    typer.echo(json.dumps(summary.headline(), indent=2))


@app.command()
@_friendly
def report(
    run_dir: Path = typer.Argument(..., help="Run folder written by `multimodal train`."),
    out: Path | None = typer.Option(
        None, "--out", help="HTML file to write (default: RUN_DIR/report.html)."
    ),
    cohort: Path | None = typer.Option(
        None, "--cohort", help="The run's cohort (default: found from the run folder)."
    ),
    robustness: bool = typer.Option(
        True,
        "--robustness/--no-robustness",
        help="Measure robustness to input perturbations (loads the fold models; the slow part).",
    ),
    n_boot: int = typer.Option(200, "--n-boot", min=0, help="Bootstrap resamples of the CIs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the perturbations."),
) -> None:
    """Write the run report (model card): one self-contained HTML page, viewable offline."""
    from multimodal.reporting import build_report

    path = build_report(
        run_dir, out=out, cohort=cohort, robustness=robustness, n_boot=n_boot, seed=seed
    )
    typer.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    app()
