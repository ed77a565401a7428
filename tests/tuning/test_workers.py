"""Real `multimodal tune` processes: a study killed mid-way resumes with every trial accounted
for; two workers share one study on a PostgreSQL server and together run the requested trials."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from multimodal.tuning import count_trials
from multimodal.tuning.study import storage_url

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The workers' environment. Where bytecode writing is off (PYTHONDONTWRITEBYTECODE), every
    worker would compile torch, optuna, sksurv ... from source (~12 s of CPU each): give them a
    shared bytecode cache instead, so only the first one of this module pays for it."""
    if not sys.flags.dont_write_bytecode:
        return ENV
    env = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return env


def tune_cmd(tune_file, cohort, out, n_trials, *extra) -> list[str]:
    return [
        sys.executable, "-m", "multimodal.cli", "tune", "--config", str(tune_file),
        "--cohort", str(cohort), "--out", str(out), "--n-trials", str(n_trials), *extra,
    ]  # fmt: skip


def _sqlite_states(db) -> tuple[list[str], bool]:
    """(trial states, whether a running trial has its worker recorded), read without Optuna."""
    if not db.is_file():
        return [], False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            states = [s for (s,) in con.execute("SELECT state FROM trials")]
            running_with_worker = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a "
                "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND a.key = 'worker'"
            ).fetchone()[0]
    except sqlite3.Error:  # tables not created yet, or a write in progress
        return [], False
    return states, running_with_worker > 0


def test_a_killed_study_resumes_with_every_trial_accounted_for(
    tiny_tune_file, tiny_cohort_path, tmp_path, env
):
    out = tmp_path / "run"
    # After the first trial (~4 s: imports, caches) a tiny trial takes 0.1-0.2 s, so the window to
    # kill one mid-way is short on an idle machine: several trials and a quick poll keep it open
    n = 8
    cmd = tune_cmd(tiny_tune_file, tiny_cohort_path, out, n)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while True:
        states, running = _sqlite_states(out / "study.db")
        if running and any(s in ("COMPLETE", "PRUNED") for s in states):
            proc.send_signal(signal.SIGKILL)  # no chance to clean up: like a lost machine
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"tune ended before it could be killed:\n{proc.communicate()[0].decode()}")
        time.sleep(0.02)
    proc.wait()
    assert "RUNNING" in _sqlite_states(out / "study.db")[0]

    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    study = optuna.load_study(study_name="tiny", storage=storage_url(None, out))
    trials = study.get_trials()
    c = count_trials(trials)
    assert (c.finished, c.running, c.waiting, c.retried) == (n, 0, 0, 1), c
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    (rerun,) = [t for t in trials if t.system_attrs.get("retry_history") == [killed.number]]
    assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the re-run resumes in the killed trial's folder (unless the kill came before the trial had
    # recorded it: then the heartbeat found it and it starts afresh)
    assert rerun.user_attrs["trial_dir"] == killed.user_attrs.get("trial_dir", str(rerun.number))
    assert "re-queueing" in res.stderr
    assert f"[{n}/{n}]" in res.stdout  # the resumed run counts the trials of the killed one
    summary = json.loads((out / "summary.json").read_text())
    t = summary["trials"]
    assert t["complete"] + t["pruned"] + t["failed"] == n and t["retried"] == 1
    assert (out / "best.yaml").is_file() and (out / "history.png").is_file()


def _postgres_url() -> str:
    """The test server (scripts/postgres.sh, started by .ci/run); skip without one, except in CI."""
    url = os.environ.get("MULTIMODAL_TEST_POSTGRES")
    in_ci = os.environ.get("CI", "").lower() == "true"
    problem = None
    if not url:
        problem = "MULTIMODAL_TEST_POSTGRES is not set (export it from: bash scripts/postgres.sh)"
    else:
        import sqlalchemy

        try:
            with sqlalchemy.create_engine(storage_url(url, None)).connect() as con:
                con.execute(sqlalchemy.text("SELECT 1"))
        except Exception as exc:
            problem = f"PostgreSQL at {url.split('@')[-1]} is unreachable: {exc}"
    if problem and in_ci:
        pytest.fail(f"CI=true but {problem}")
    if problem:
        pytest.skip(problem)
    return url


@pytest.mark.postgres
def test_two_workers_share_one_postgres_study(tiny_tune_file, tiny_cohort_path, tmp_path, env):
    url = _postgres_url()
    name = f"test-two-workers-{uuid.uuid4().hex[:8]}"
    n_trials = 4
    # two run folders, as on two machines; one study in the database
    procs = [
        subprocess.Popen(
            tune_cmd(
                tiny_tune_file,
                tiny_cohort_path,
                tmp_path / f"worker{k}",
                n_trials,
                "--storage",
                url,
                "--study-name",
                name,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(2)
    ]
    outputs = [p.communicate(timeout=400) for p in procs]
    storage = storage_url(url, None)
    try:
        for p, (stdout, stderr) in zip(procs, outputs):
            assert p.returncode == 0, stdout + stderr
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        c = count_trials(trials)
        assert len(trials) == n_trials and (c.finished, c.running, c.waiting) == (n_trials, 0, 0)
        pids = {int(t.user_attrs["worker"].split(":")[1]) for t in trials}
        assert pids == {p.pid for p in procs}  # both workers ran trials
        for k in range(2):  # each worker waited for the other, then summarised the whole study
            summary = json.loads((tmp_path / f"worker{k}" / "summary.json").read_text())
            assert sum(summary["trials"][s] for s in ("complete", "pruned", "failed")) == n_trials
            assert (tmp_path / f"worker{k}" / "best.yaml").is_file()
    finally:
        optuna.delete_study(study_name=name, storage=storage)
