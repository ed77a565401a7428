"""``tune(...) -> TuneResult``: run (or resume, or join) an Optuna study over a tuning file.

The study lives in a relational storage: ``RUN_DIR/study.db`` (SQLite) by default, or a
PostgreSQL server shared by several ``multimodal tune`` workers on one or more machines. The
requested number of trials is a budget for the *study*, not for one process: every worker counts
the trials already finished or running (a trial that died and was re-run counts once), and takes a
new trial only while the study has fewer than ``n_trials``. That check and the creation of the
trial happen under a lock (a PostgreSQL advisory lock, or a file lock next to the SQLite file),
so workers that start together never overshoot.

Dead workers: each running trial sends a heartbeat; one that stops for ``grace_period`` seconds is
marked failed and re-queued with the same parameters (at most ``max_retry`` times). A trial whose
worker process on this machine no longer exists is re-queued at once, and so is one stopped with
Ctrl-C; the re-run trains in the same trial folder and resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multimodal.exceptions import ConfigError, TuningError
from multimodal.tuning.objective import Objective, worker_id
from multimodal.tuning.report import progress_line, write_outputs
from multimodal.tuning.result import TrialCounts, TuneResult, count_trials
from multimodal.tuning.space import TuneSpec, load_tune_spec

__all__ = ["TrialCounts", "TuneResult", "count_trials", "redact", "storage_url", "tune"]

log = logging.getLogger(__name__)

#: a worker stops after this many failed trials in a row while no trial of the study completed
MAX_FAILURES_BEFORE_ANY_SUCCESS = 5


# -- storage -----------------------------------------------------------------------------------


def storage_url(storage: str | None, run_dir: Path) -> str:
    """The SQLAlchemy URL of a study: ``--storage`` (a bare postgresql:// gets the installed
    driver) or the SQLite file ``run_dir/study.db``."""
    if not storage:
        return f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if "://" not in storage:
        raise ConfigError(
            f"--storage {storage!r} is not a database URL; use "
            "postgresql://user:password@host:5432/dbname or sqlite:///path/study.db"
        )
    scheme, rest = storage.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        # SQLAlchemy >= 2.1 reads a bare postgresql:// as psycopg 3; the `tune` extra installs
        # psycopg2, so name the driver that is there
        return f"postgresql+{_postgres_driver()}://{rest}"
    return storage


def _postgres_driver() -> str:
    import importlib.util

    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return driver
    raise ConfigError(
        "a PostgreSQL storage needs a driver: pip install 'multimodal[tune]' (psycopg2-binary)"
    )


def redact(url: str) -> str:
    """The storage URL without its password (for logs and summary.json)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: say nothing secret
        return url.split("@")[-1]


def _retry_class() -> type:
    """Optuna >= 4.9 renamed the callback that re-queues a dead trial (same behaviour)."""
    from optuna import storages

    new = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    return new or storages.RetryFailedTrialCallback


def _make_storage(url: str, spec: TuneSpec) -> Any:
    import optuna
    from optuna.storages import RDBStorage

    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}  # wait for the other writer instead of failing
    hb = spec.study.heartbeat_interval
    stale_key = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters
        else "failed_trial_callback"
    )
    retry_dead = _retry_callback(spec)

    def retry(study: Any, trial: Any) -> None:
        log.info("trial %d: no heartbeat for %d s; re-queueing it", trial.number, grace)
        retry_dead(study, trial)

    grace = spec.study.grace_period or 2 * hb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=hb,
                grace_period=grace,
                **{stale_key: retry},
            )
        except Exception as exc:
            raise TuningError(
                f"cannot open the study storage {redact(url)}: {type(exc).__name__}: {exc}. "
                "Is the server running and the database created (see scripts/postgres.sh)?"
            ) from None


def _sampler(spec: TuneSpec, seed: int | None) -> Any:
    import optuna

    s = spec.sampler
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: concurrently running trials count as bad, so workers spread out
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=s.n_startup_trials, constant_liar=True, multivariate=True
        )


def _pruner(spec: TuneSpec) -> Any:
    import optuna

    p = spec.pruner
    if p.name == "none" or len(spec.objective.metrics) > 1:
        return optuna.pruners.NopPruner()
    if p.name == "median":
        # the warm-up applies to every inner fold; the objective skips reporting those epochs
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=0)
    return optuna.pruners.HyperbandPruner(
        min_resource=p.min_resource,
        max_resource=spec.objective.inner_folds * spec.max_epochs(),
        reduction_factor=p.reduction_factor,
    )


def _worker_seed(spec: TuneSpec, fresh: bool, shared: bool, thread: int) -> int | None:
    """The tuning file's seed for a single worker on a fresh study (reproducible); any other
    worker gets its own stream so that workers and resumed runs never repeat each other."""
    base = spec.sampler.seed
    if base is None or (fresh and not shared and thread == 0):
        return base
    key = f"{base}:{worker_id(thread)}:{time.time_ns()}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def _open_study(spec: TuneSpec, storage: Any, name: str, fingerprint: str, seed: int | None):
    import optuna

    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=spec.objective.directions,
        sampler=_sampler(spec, seed),
        pruner=_pruner(spec),
        load_if_exists=True,
    )
    found = study.user_attrs.get("multimodal_fingerprint")
    if found is None:
        study.set_user_attr("multimodal_fingerprint", fingerprint)
        study.set_user_attr("metrics", spec.objective.metrics)
        study.set_user_attr("tuning_file", spec.source)
    elif found != fingerprint:
        raise TuningError(
            f"study {name!r} in this storage was created from a different tuning file, base config "
            "or outer fold; continuing it would mix two searches. Use another --study-name or "
            "--out, or restore the original tuning file."
        )
    if [d.name.lower() for d in study.directions] != spec.objective.directions:
        raise TuningError(
            f"study {name!r} in this storage optimises {[d.name.lower() for d in study.directions]}"
            f", not {spec.objective.directions} ({spec.objective.metrics}); use another "
            "--study-name or --out"
        )
    return study


# -- locks: one worker at a time decides whether the study needs another trial -----------------


_LOCAL_LOCKS: dict[str, threading.Lock] = {}


class _TrialSlot:
    """Cross-process lock around "count the trials, then create one".

    PostgreSQL: a session advisory lock keyed by the study name. SQLite: ``flock`` on a file next
    to the database. Anything else: a lock within this process only.
    """

    def __init__(self, url: str, study_name: str) -> None:
        self.url, self.name = url, study_name
        self._held = False
        self._conn = None
        self._file = None
        self._key = int(hashlib.sha256(study_name.encode()).hexdigest()[:15], 16)
        self._local = _LOCAL_LOCKS.setdefault(url + "#" + study_name, threading.Lock())

    def acquire(self) -> None:
        if self.url.startswith("postgresql"):
            from sqlalchemy import text

            if self._conn is None:
                from sqlalchemy import create_engine
                from sqlalchemy.pool import NullPool

                engine = create_engine(self.url, poolclass=NullPool)
                self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        elif self.url.startswith("sqlite:///"):
            import fcntl

            if self._file is None:
                path = Path(self.url.removeprefix("sqlite:///")).with_suffix(".lock")
                self._file = open(path, "a+")  # held for the worker's lifetime
            fcntl.flock(self._file, fcntl.LOCK_EX)
        else:
            self._local.acquire()
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._conn is not None:
            from sqlalchemy import text

            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        elif self._file is not None:
            import fcntl

            fcntl.flock(self._file, fcntl.LOCK_UN)
        else:
            self._local.release()

    def close(self) -> None:
        self.release()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


# -- the worker loop ---------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reclaim(study: Any, retry: Callable[[Any, Any], None]) -> None:
    """Fail and re-queue trials that will never finish: stale heartbeat, dead local worker,
    or stopped by Ctrl-C."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat-based; re-queues through the storage
    host = socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in trials:
        w_host, _, rest = str(t.user_attrs.get("worker", "")).partition(":")
        pid = int(rest.split("/")[0]) if rest.split("/")[0].isdigit() else None
        dead = t.state == TrialState.RUNNING and w_host == host and pid is not None
        dead = dead and pid != os.getpid() and not _pid_alive(pid)
        interrupted = (
            t.state == TrialState.FAIL
            and t.user_attrs.get("interrupted")
            and t.number not in retried
        )
        if dead:
            log.info("trial %d: its worker (pid %d) is gone; re-queueing it", t.number, pid)
            t = study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if dead or interrupted:
            retry(study, t)


def _retry_callback(spec: TuneSpec) -> Callable[[Any, Any], None]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        cb = _retry_class()(max_retry=spec.study.max_retry)

    def retry(study: Any, trial: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            cb(study, trial)

    return retry


@dataclass
class _Budget:
    n_trials: int
    deadline: float | None
    stop: threading.Event = field(default_factory=threading.Event)
    poll: float = 2.0


def _next_action(study: Any, budget: _Budget, retry, own_failures: int) -> str:
    """What a worker does next: ``run`` a trial, ``wait`` (the budget is used up but other
    workers still run trials) or ``done``."""
    if budget.stop.is_set():
        return "done"
    if budget.deadline is not None and time.monotonic() >= budget.deadline:
        return "done"
    _reclaim(study, retry)
    c = count_trials(study.get_trials(deepcopy=False))
    if own_failures >= MAX_FAILURES_BEFORE_ANY_SUCCESS and c.complete == 0:
        budget.stop.set()
        return "done"
    if c.waiting:
        return "run"
    if c.used < budget.n_trials:
        return "run"
    return "wait" if c.running else "done"


def _run_worker(
    make_study: Callable[[], Any],
    make_objective: Callable[[Callable[[], None]], Objective],
    slot: _TrialSlot,
    budget: _Budget,
    retry: Callable[[Any, Any], None],
    on_trial: Callable[[Any, Any], None],
) -> None:
    study = make_study()
    objective = make_objective(slot.release)
    failures = 0
    waited = False
    try:
        while True:
            slot.acquire()
            try:
                action = _next_action(study, budget, retry, failures)
                if action == "run":
                    # the objective releases the slot as soon as its trial exists
                    study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[on_trial])
                    last = _last_own_trial(study, objective)
                    failures = failures + 1 if last == "FAIL" else 0
            finally:
                slot.release()
            if action == "done":
                return
            if action == "wait":
                if not waited:
                    log.info("waiting for trials still running in other workers")
                    waited = True
                time.sleep(budget.poll)
    finally:
        slot.close()


def _last_own_trial(study: Any, objective: Objective) -> str | None:
    me = worker_id(objective.thread)
    for t in reversed(study.get_trials(deepcopy=False)):
        if t.user_attrs.get("worker") == me and t.datetime_complete is not None:
            return t.state.name
    return None


# -- the public entry point --------------------------------------------------------------------


#: Keys that decide the outer folds (with data.folds / data.split, which the tuner reserves): a
#: trial that changed them would make best.yaml's fold K differ from the one the study tuned on.
_OUTER_FOLD_KEYS = ("train.seed", "data.group_by", "endpoint")


def _check_outer_folds_fixed(spec: TuneSpec) -> None:
    """With ``--outer-fold``, the search must not move patients between outer folds."""
    moving = [k for k in spec.search if k in _OUTER_FOLD_KEYS]
    if moving:
        raise ConfigError(
            f"{spec.source}: search.{moving[0]} changes which patients form the outer folds, so "
            "best.yaml's outer fold would contain patients the study tuned on (nested-CV "
            f"leakage). Remove {', '.join(moving)} from 'search' (fix it under 'overrides') "
            "or tune without --outer-fold."
        )


def _tuning_cohort(spec: TuneSpec, cohort: Any, outer_fold: int | None) -> tuple[Any, str]:
    """The patients the study may see: all of them, or the training part of one outer fold."""
    from multimodal.config import load_config
    from multimodal.data.cohort import Cohort

    base_cfg = load_config(spec.base)
    if cohort is None or isinstance(cohort, (str, Path)):
        path = cohort or base_cfg.data.cohort
        if not path:
            raise ConfigError(
                f"no cohort: pass --cohort or set data.cohort in the base config of {spec.source}"
            )
        cohort = Cohort.load(path, **base_cfg.data.cohort_options())
    else:  # a cohort object: its covariates must be the base config's (best.yaml is built on it)
        from multimodal.training.trainer import with_cohort_covariates

        read_with = with_cohort_covariates(base_cfg, cohort).data.cohort_options()
        if read_with != base_cfg.data.cohort_options():
            raise ConfigError(
                f"the cohort was read with the clinical covariates {read_with}; set them in the "
                f"base config of {spec.source} (data.clinical_*), so that every trial and "
                "best.yaml record them"
            )
    if outer_fold is None:
        return cohort, f"all {len(cohort.patients)} patients"
    # the same outer folds as `multimodal train` with the base config (data.folds/split/seed)
    from multimodal.training.trainer import cohort_folds, trainable_cohort

    cohort = trainable_cohort(cohort, base_cfg.endpoint)
    base_cfg.data.fold_indices = None  # every outer fold exists, whichever ones train runs
    folds = {f.index: f for f in cohort_folds(base_cfg, cohort)}
    if outer_fold not in folds:
        raise ConfigError(
            f"outer fold {outer_fold} does not exist: the base config makes folds "
            f"{sorted(folds)} (data.folds / data.split)"
        )
    train_ids = list(folds[outer_fold].train_ids)
    what = f"the {len(train_ids)} training patients of outer fold {outer_fold} of {len(folds)}"
    return cohort.subset(train_ids), what


def tune(
    config: str | Path | dict[str, Any] | TuneSpec,
    *,
    out: str | Path,
    cohort: Any = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    n_jobs: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    outer_fold: int | None = None,
    overrides: list[str] | None = None,
    pruner: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Run, resume or join an Optuna study and write its summary to ``out``.

    Parameters
    ----------
    config : tuning file (path or dict, see :mod:`multimodal.tuning.space`) or a loaded spec.
    out : run folder: ``study.db`` (default storage), ``trials/<n>/``, ``best.yaml``,
        ``summary.json``, ``trials.csv``, ``history.png``.
    cohort : a :class:`multimodal.Cohort` or its path (default: the base config's data.cohort).
    n_trials : trials the study should end with, counting those of earlier runs and other
        workers (default: ``study.n_trials`` of the tuning file).
    timeout : seconds after which this worker starts no new trial.
    n_jobs : trials run in parallel threads of this process.
    storage : database URL shared by several workers (default: SQLite ``out/study.db``).
    study_name : default: ``study.name`` of the tuning file (its file name), plus
        ``-outer<K>`` with ``outer_fold``.
    outer_fold : tune on the training patients of this outer fold only (nested CV); best.yaml
        then trains and evaluates on exactly that fold.
    overrides : ``key=value`` settings applied to the base config for every trial.
    pruner : ``median``, ``hyperband`` or ``none``: overrides ``pruner.name`` of the tuning file.
    progress : called with one line per finished trial (default: logging).

    Returns
    -------
    TuneResult
    """
    spec = config if isinstance(config, TuneSpec) else load_tune_spec(config, overrides)
    if pruner is not None:
        if pruner not in ("median", "hyperband", "none"):
            raise ConfigError(f"pruner {pruner!r}: use median, hyperband or none")
        spec.pruner = spec.pruner.model_copy(update={"name": pruner})
    n_trials = n_trials or spec.study.n_trials
    if not n_trials or n_trials < 1:
        raise ConfigError(f"give --n-trials (or study.n_trials in {spec.source})")
    if n_jobs < 1:
        raise ConfigError(f"--n-jobs must be >= 1 (got {n_jobs})")
    if outer_fold is not None:
        _check_outer_folds_fixed(spec)
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    cohort_path = cohort if isinstance(cohort, (str, Path)) else None
    cohort, what = _tuning_cohort(spec, cohort, outer_fold)
    spec.check_modalities(list(cohort.modalities))
    name = study_name or spec.study.name or "multimodal"
    if outer_fold is not None and not study_name:
        name = f"{name}-outer{outer_fold}"
    from multimodal.training.provenance import data_fingerprint

    fingerprint = hashlib.sha256(
        f"{spec.fingerprint()}:{outer_fold}:{data_fingerprint(cohort, [])}".encode()
    ).hexdigest()[:16]
    url = storage_url(storage, run_dir)
    storage_obj = _make_storage(url, spec)
    probe = _open_study(spec, storage_obj, name, fingerprint, None)
    fresh = len(probe.get_trials(deepcopy=False)) == 0
    before = count_trials(probe.get_trials(deepcopy=False))
    say = progress or log.info
    say(
        f"study {name!r} in {redact(url)}: {before.finished} of {n_trials} trials done; "
        f"tuning on {what}, {spec.objective.inner_folds} inner folds, "
        f"{len(spec.search)} parameters, pruner {spec.pruner.name}"
    )
    budget = _Budget(n_trials, time.monotonic() + timeout if timeout else None)
    retry = _retry_callback(spec)

    def on_trial(study: Any, trial: Any) -> None:
        say(progress_line(study, trial, n_trials))

    def worker(thread: int) -> None:
        seed = _worker_seed(spec, fresh, storage is not None, thread)
        _run_worker(
            lambda: _open_study(spec, storage_obj, name, fingerprint, seed),
            lambda release: Objective(spec, cohort, run_dir, thread=thread, on_start=release),
            _TrialSlot(url, name),
            budget,
            retry,
            on_trial,
        )

    def outputs() -> TuneResult:
        return write_outputs(
            _open_study(spec, storage_obj, name, fingerprint, None),
            spec,
            run_dir,
            storage=redact(url),
            n_trials=n_trials,
            outer_fold=outer_fold,
            tuned_on=what,
            cohort_path=str(cohort_path) if cohort_path else None,
        )

    try:
        _run_threads(worker, n_jobs, budget)
    except KeyboardInterrupt:
        outputs()  # what is finished so far; the same command resumes the study
        raise
    result = outputs()
    counts = result.counts
    if counts.complete == 0 and budget.stop.is_set():
        errors = result.summary.get("errors") or ["(no error recorded)"]
        raise TuningError(
            f"stopped after {MAX_FAILURES_BEFORE_ANY_SUCCESS} failed trials and none completed; "
            f"first error: {errors[0]}. Fix the tuning file or base config; trials.csv lists every "
            "error."
        )
    return result


def _run_threads(worker: Callable[[int], None], n_jobs: int, budget: _Budget) -> None:
    if n_jobs == 1:
        worker(0)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        futures = [pool.submit(worker, j) for j in range(n_jobs)]
        try:
            for f in futures:
                f.result()
        except BaseException:
            budget.stop.set()  # the other threads finish their current trial, then stop
            raise
