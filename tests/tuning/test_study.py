"""The study loop with a fast stand-in for train(): budget, resume, failures, pruning, outputs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from multimodal.config import load_config
from multimodal.exceptions import ConfigError, TuningError
from multimodal.tuning import tune
from multimodal.tuning.space import load_tune_spec


def fake_spec(**sections) -> dict:
    raw = {
        "base": {
            "data": {"modalities": ["clinical", "genomics"]},
            "train": {"epochs": 10},
            "fusion": {"name": "concat"},
        },
        "search": {
            "train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "fusion.name": {"type": "categorical", "choices": ["concat", "attention_gated"]},
        },
        "objective": {"inner_folds": 2},
        "pruner": {"name": "none"},
        "sampler": {"seed": 0, "n_startup_trials": 3},
        "study": {"name": "fake", "heartbeat_interval": 2},
    }
    raw.update(sections)
    return raw


def trials_of(run_dir, name="fake"):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")
    return study.get_trials(deepcopy=False)


def test_study_runs_and_writes_outputs(fake_train, tiny_cohort, tmp_path):
    lines: list[str] = []
    res = tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=5, progress=lines.append)
    assert res.counts.complete == 5 and len(res.study.trials) == 5
    for name in ("study.db", "best.yaml", "summary.json", "trials.csv", "history.png"):
        assert (tmp_path / name).is_file(), name
    # every trial trained with inner CV on all the patients given, in its own folder
    calls = fake_train.current.calls
    assert [c.cfg.data.folds for c in calls] == [2] * 5
    assert all(c.cohort is tiny_cohort for c in calls)
    assert sorted(c.out.name for c in calls) == ["0", "1", "2", "3", "4"]
    for c in calls:  # heavy folders of finished trials are gone
        assert not (c.out / "checkpoints").exists() and not (c.out / "model").exists()
    # best.yaml is a full config: the base (its own folds, bootstrap) plus the best parameters
    best = load_config(tmp_path / "best.yaml")
    assert best.train.lr == pytest.approx(res.study.best_params["train.lr"])
    assert best.fusion.name == res.study.best_params["fusion.name"]
    assert best.data.folds == 5 and best.eval.bootstrap == 200 and best.train.progress
    assert res.best_config == best and res.best_value == pytest.approx(res.study.best_value)
    # one progress line per trial with a running best, after a header
    trial_lines = [ln for ln in lines if ln.startswith("trial ")]
    assert len(trial_lines) == 5
    pattern = r"trial \d  value 0\.\d{4}  best 0\.\d{4} \(trial \d\)  \d+\.\d s  \[\d/5\]"
    assert all(re.fullmatch(pattern, ln) for ln in trial_lines), trial_lines
    assert trial_lines[-1].endswith("[5/5]")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (
        summary["trials"]["complete"] == 5
        and summary["best"]["number"] == res.study.best_trial.number
    )
    assert set(summary["param_importances"]) == {"train.lr", "fusion.name"}
    assert summary["timing"]["trials_per_hour"] > 0


def test_rerun_counts_finished_trials_against_n_trials(fake_train, tiny_cohort, tmp_path):
    tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=3)
    tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=3)
    assert len(fake_train.current.calls) == 3  # nothing left to do
    res = tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=5)
    assert len(fake_train.current.calls) == 5 and res.counts.complete == 5


def test_a_changed_tuning_file_does_not_join_the_old_study(fake_train, tiny_cohort, tmp_path):
    tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=1)
    other = fake_spec(objective={"inner_folds": 3})
    with pytest.raises(TuningError, match="created from a different tuning file"):
        tune(other, cohort=tiny_cohort, out=tmp_path, n_trials=2)
    res = tune(other, cohort=tiny_cohort, out=tmp_path, n_trials=1, study_name="second")
    assert res.counts.complete == 1


def test_failed_and_nan_trials_are_recorded_and_the_study_goes_on(
    fake_train, tiny_cohort, tmp_path
):
    fake_train.set(
        fail_when=lambda cfg: cfg.fusion.name == "attention_gated",
        nan_when=lambda cfg: cfg.fusion.name == "late",
    )
    search = {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "fusion.name": {"type": "categorical", "choices": ["concat", "attention_gated", "late"]},
    }
    spec = fake_spec(search=search, sampler={"name": "random", "seed": 1})
    res = tune(spec, cohort=tiny_cohort, out=tmp_path, n_trials=9)
    trials = res.study.trials
    assert len(trials) == 9 and res.counts.finished == 9
    by_name = {
        n: [t for t in trials if t.params["fusion.name"] == n]
        for n in search["fusion.name"]["choices"]
    }
    assert all(by_name.values()), "the seed should draw every choice"
    assert all(t.state == TrialState.COMPLETE for t in by_name["concat"])
    for t in by_name["attention_gated"]:
        assert t.state == TrialState.FAIL and "boom" in t.user_attrs["error"]
    for t in by_name["late"]:
        assert t.state == TrialState.FAIL and "c_index is nan" in t.user_attrs["error"]
    assert res.counts.failed == len(by_name["attention_gated"]) + len(by_name["late"])
    assert load_config(tmp_path / "best.yaml").fusion.name == "concat"
    assert "boom" in (tmp_path / "trials.csv").read_text()


def test_a_study_where_every_trial_fails_stops_with_the_error(fake_train, tiny_cohort, tmp_path):
    fake_train.set(fail_when=lambda cfg: True)
    with pytest.raises(TuningError, match=r"stopped after 5 failed trials.*boom"):
        tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=50)
    assert len(trials_of(tmp_path)) == 5
    assert not (tmp_path / "best.yaml").exists()


def test_median_pruning_on_the_per_epoch_c_index(fake_train, tiny_cohort, tmp_path):
    spec = fake_spec(
        pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
        sampler={"name": "random", "seed": 0},
    )
    res = tune(spec, cohort=tiny_cohort, out=tmp_path, n_trials=12)
    trials = res.study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and complete and len(trials) == 12
    # steps: inner fold f, epoch e -> f * 10 + e (10 = the most epochs a fold can train); the
    # first 2 epochs of every fold are a warm-up, never reported
    assert sorted(complete[0].intermediate_values) == [*range(3, 11), *range(13, 21)]
    for t in pruned:
        assert t.user_attrs["epochs"] < 20
        at = t.user_attrs["pruned_at"]
        assert at["epoch"] > 2
        assert max(t.intermediate_values) == at["fold"] * 10 + at["epoch"]
    timing = json.loads((tmp_path / "summary.json").read_text())["timing"]
    assert timing["epochs_trained"] < 20 * 12
    assert "pruning_saved_fraction_estimate" in timing


def test_hyperband_pruner_is_selectable(fake_train, tiny_cohort, tmp_path):
    spec = fake_spec(pruner={"name": "hyperband", "min_resource": 2, "reduction_factor": 3})
    res = tune(spec, cohort=tiny_cohort, out=tmp_path, n_trials=6)
    assert isinstance(res.study.pruner, optuna.pruners.HyperbandPruner)
    assert res.counts.finished == 6
    # --pruner overrides the tuning file (and may change when a study resumes)
    res = tune(spec, cohort=tiny_cohort, out=tmp_path, n_trials=7, pruner="none")
    assert isinstance(res.study.pruner, optuna.pruners.NopPruner) and res.counts.finished == 7
    assert not res.study.trials[-1].intermediate_values


def test_multi_objective_c_index_up_ibs_down(fake_train, tiny_cohort, tmp_path):
    spec = fake_spec(
        objective={"inner_folds": 2, "metrics": ["c_index", "ibs"]}, pruner={"name": "median"}
    )
    lines: list[str] = []
    res = tune(spec, cohort=tiny_cohort, out=tmp_path, n_trials=4, progress=lines.append)
    assert [d.name for d in res.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(not t.intermediate_values for t in res.study.trials)  # Optuna cannot prune these
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pareto_front"] and set(summary["best"]["values"]) == {"c_index", "ibs"}
    assert (tmp_path / "best.yaml").is_file()
    assert any("c_index 0." in ln and "ibs 0." in ln and "pareto front" in ln for ln in lines)


def test_an_interrupted_trial_is_rerun_on_resume(fake_train, tiny_cohort, tmp_path):
    fake_train.set(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=5)
    (killed,) = [t for t in trials_of(tmp_path) if t.state == TrialState.FAIL]
    assert killed.user_attrs["interrupted"] and (tmp_path / "summary.json").is_file()
    fake = fake_train.set()
    res = tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=5)
    c = res.counts
    assert (c.complete, c.failed, c.retried, c.running, c.waiting) == (5, 0, 1, 0, 0)
    (retry,) = [
        t for t in res.study.trials if t.system_attrs.get("retry_history") == [killed.number]
    ]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    # the re-run trains in the killed trial's folder and resumes from its checkpoints
    assert fake.calls[0].out.name == str(killed.number) and fake.calls[0].cfg.train.resume
    assert not any(c.cfg.train.resume for c in fake.calls[1:])  # new trials start afresh


def test_a_trial_of_a_dead_local_worker_is_requeued(fake_train, tiny_cohort, tmp_path):
    tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=2)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'study.db'}")
    orphan = study.ask()
    orphan.suggest_float("train.lr", 1e-4, 1e-1, log=True)
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}")
    res = tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=4)
    c = res.counts
    assert (c.finished, c.running, c.waiting, c.retried) == (4, 0, 0, 1)
    states = {t.number: t.state for t in res.study.trials}
    assert states[orphan.number] == TrialState.FAIL


def test_threads_share_the_trial_budget(fake_train, tiny_cohort, tmp_path):
    fake_train.set(delay=0.3)
    res = tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=6, n_jobs=2)
    assert res.counts.complete == 6 and len(res.study.trials) == 6
    workers = {t.user_attrs["worker"] for t in res.study.trials}
    assert len(workers) == 2 and any(w.endswith("/t1") for w in workers)


def test_outer_fold_tunes_on_its_training_patients_only(fake_train, tiny_cohort, tmp_path):
    spec = fake_spec()
    spec["base"]["data"]["folds"] = 3
    res = tune(spec, cohort=tiny_cohort, out=tmp_path, n_trials=2, outer_fold=1)
    assert res.study.study_name == "fake-outer1"
    (outer,) = [f for f in tiny_cohort.folds(k=3, seed=0) if f.index == 1]
    for call in fake_train.current.calls:
        seen = set(call.cohort.patients.index)
        assert seen == set(outer.train_ids) and not seen & set(outer.val_ids)
    best = load_config(tmp_path / "best.yaml")
    assert best.data.folds == 3 and best.data.fold_indices == [1]
    with pytest.raises(ConfigError, match=r"outer fold 7 does not exist.*\[0, 1, 2\]"):
        tune(spec, cohort=tiny_cohort, out=tmp_path / "x", n_trials=1, outer_fold=7)
    # a search over the seed of the outer split would move patients of fold 1's validation part
    # into the training part best.yaml uses (and back): refused before any trial runs
    leaky = fake_spec()
    leaky["search"]["train.seed"] = {"type": "int", "low": 0, "high": 9}
    n_calls = len(fake_train.current.calls)
    with pytest.raises(ConfigError, match=r"search\.train\.seed changes which patients.*overrides"):
        tune(leaky, cohort=tiny_cohort, out=tmp_path / "y", n_trials=1, outer_fold=1)
    assert len(fake_train.current.calls) == n_calls


def test_cohort_and_budget_errors(fake_train, tiny_cohort, tmp_path):
    bad = fake_spec()
    bad["base"]["data"]["modalities"] = ["clinical", "genomic"]
    with pytest.raises(ConfigError, match=r"Did you mean 'genomics'"):
        tune(bad, cohort=tiny_cohort, out=tmp_path, n_trials=1)
    with pytest.raises(ConfigError, match="--n-trials"):
        tune(fake_spec(), cohort=tiny_cohort, out=tmp_path)
    with pytest.raises(ConfigError, match="no cohort"):
        tune(fake_spec(), out=tmp_path, n_trials=1)
    with pytest.raises(ConfigError, match="not a database URL"):
        tune(fake_spec(), cohort=tiny_cohort, out=tmp_path, n_trials=1, storage="study.db")


def test_objective_on_a_fixed_trial(tiny_cohort, tiny_tune_file, tmp_path):
    """The real objective (one train() with inner CV) on a fixed set of parameters."""
    from multimodal.tuning.objective import Objective

    spec = load_tune_spec(tiny_tune_file)
    params = {
        "train.lr": 0.003,
        "fusion.dim": 8,
        "fusion.dropout": 0.1,
        "fusion.name": "attention_gated",
        "head.name": "cox",
        "data.modalities": "clinical+genomics",
    }
    trial = optuna.trial.FixedTrial(params, number=0)
    value = Objective(spec, tiny_cohort, tmp_path)(trial)
    assert 0.0 <= value <= 1.0
    run = tmp_path / "trials" / "0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["c_index"] == pytest.approx(value) and len(metrics["folds"]) == 2
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw.pop("_meta")
    cfg = load_config(raw)
    assert cfg.fusion.name == "attention_gated" and cfg.data.modalities == ["clinical", "genomics"]
    assert not (run / "checkpoints").exists() and not (run / "model").exists()
    assert trial.user_attrs["epochs"] == 6 and trial.user_attrs["metrics"]["c_index"] == value
