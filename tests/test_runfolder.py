"""RunFolder: round trips of every file, atomic writes, schema versions and read errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import multimodal.runfolder as runfolder
from multimodal.exceptions import RunFolderError
from multimodal.runfolder import (
    SCHEMA_VERSION,
    RunFolder,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_text,
    json_default,
)


def predictions(k: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["007", "P-1", "12"],  # ids that look like numbers stay strings
            "fold": k,
            "split": ["train", "val", "val"],
            "time": [3.0, 10.5, 7.25],
            "event": [1, 0, 1],
            "risk": [0.4, -1.2, 0.0],
            "surv_12": [0.9, 0.95, 0.8],
        }
    )


def history(k: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"epoch": [0, 1], "loss": [1.5, 1.25], "fold": k})


def fold_files(k: int = 0) -> dict:
    return {
        "state_dict": {
            "w": torch.arange(6.0).reshape(2, 3).t(),  # not contiguous
            "b": torch.ones(2, requires_grad=True),
        },
        "model_meta": {"fold": k, "specs": {"clinical": {"dim": 3}}, "cuts": None},
        "preprocess": {"clinical": {"kind": "clinical", "state": {"mean": np.zeros(2)}}},
        "predictions": predictions(k),
        "history": history(k),
        "result": {
            "metrics": {"c_index": np.float64(0.71), "n_val": np.int64(2)},
            "eval_times": [12.0],
            "config_fingerprint": "abc",
        },
    }


@pytest.fixture
def run(tmp_path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.write_config({"endpoint": "os", "_meta": {"seed": 0, "modalities": ["clinical"]}})
    return folder


def tmp_files(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------ round trips
def test_config_round_trip_records_the_schema_version(run):
    resolved = {"endpoint": "os", "train": {"epochs": 3}}
    run.write_config(resolved)
    assert "_meta" not in resolved  # the caller's dict is left alone
    raw = run.read_config_raw()
    assert raw["train"] == {"epochs": 3}
    assert run.read_meta() == {"schema_version": SCHEMA_VERSION}
    assert run.schema_version() == SCHEMA_VERSION == 2
    assert run.is_run() and run.require() is run


def test_a_config_without_schema_version_reads_as_schema_1(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"endpoint": "os", "_meta": {"seed": 1}}))
    assert RunFolder(tmp_path).schema_version() == 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"endpoint": "os"}))
    assert RunFolder(tmp_path).read_meta() == {}
    assert RunFolder(tmp_path).schema_version() == 1


def test_metrics_predictions_history_round_trip(run):
    metrics = {
        "c_index": np.float32(0.5),
        "n": np.int64(3),
        "ok": np.bool_(True),
        "td_auc": np.array([0.6, 0.7]),
        "folds": [{"fold": 0}],
    }
    run.write_metrics(metrics)
    assert run.read_metrics() == {
        "c_index": 0.5,
        "n": 3,
        "ok": True,
        "td_auc": [0.6, 0.7],
        "folds": [{"fold": 0}],
    }
    assert run.metrics_path.read_text().startswith('{\n  "c_index"')  # indent=2
    assert run.read_history() is None
    run.write_predictions(predictions())
    run.write_history(history())
    pd.testing.assert_frame_equal(run.read_predictions(), predictions())
    assert run.read_predictions()["patient_id"].tolist() == ["007", "P-1", "12"]
    pd.testing.assert_frame_equal(run.read_history(), history())
    assert tmp_files(run.path) == []


def test_fold_round_trip_and_finished_folds(run):
    assert run.finished_folds() == []
    files = fold_files(1)
    run.write_fold(1, **files)
    assert run.finished_folds() == [1] and run.is_fold_finished(1)
    weights = run.read_fold_weights(1)
    assert torch.equal(weights["w"], files["state_dict"]["w"]) and weights["w"].is_contiguous()
    meta = run.read_fold_meta(1)
    assert len(meta.pop("weights_sha256")) == 64  # the hash of the weights file it wrote
    assert meta == {**files["model_meta"], "schema_version": SCHEMA_VERSION}
    assert run.read_fold_preprocess(1) == {
        "clinical": {"kind": "clinical", "state": {"mean": [0.0, 0.0]}}
    }
    pd.testing.assert_frame_equal(run.read_fold_predictions(1), predictions(1))
    pd.testing.assert_frame_equal(run.read_fold_history(1), history(1))
    assert run.read_fold_result(1)["metrics"] == {"c_index": 0.71, "n_val": 2}
    assert sorted(p.name for p in run.fold_dir(1).iterdir()) == [
        "fold.json",
        "history.csv",
        "model.json",
        "predictions.csv",
        "preprocess.json",
        "weights.safetensors",
    ]
    assert tmp_files(run.path) == []


def test_only_folds_with_fold_json_are_finished(run):
    run.write_fold(2, **fold_files(2))
    run.write_fold(0, **fold_files(0))
    (run.fold_dir(1)).mkdir()  # a fold that started (checkpoint only) but never finished
    atomic_write_text(run.fold_dir(1) / "model.json", "{}")
    (run.model_dir / "fold_x").mkdir()
    (run.model_dir / "fold_x" / "fold.json").write_text("{}")
    assert run.finished_folds() == [0, 2]
    assert not run.is_fold_finished(1)
    with pytest.raises(
        RunFolderError, match=r"fold_1.fold\.json is missing: fold 1 did not finish"
    ):
        run.read_fold_result(1)
    with pytest.raises(RunFolderError, match="resume"):
        run.read_fold_history(1)


def test_fold_json_is_written_last(run, monkeypatch):
    written = []
    real = runfolder._atomic_write

    def spy(path, write, mode):
        written.append(path.name)
        real(path, write, mode)

    monkeypatch.setattr(runfolder, "_atomic_write", spy)
    run.write_fold(0, **fold_files())
    assert written[-1] == "fold.json" and len(written) == 6


def test_rewriting_a_fold_unmarks_it_until_it_is_complete(run, monkeypatch):
    run.write_fold(0, **fold_files())

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runfolder, "atomic_write_csv", fail)
    with pytest.raises(RuntimeError):
        run.write_fold(0, **fold_files())
    assert run.finished_folds() == []


def test_paths_of_the_other_folders(tmp_path):
    run = RunFolder(tmp_path)
    assert run.checkpoint_path(3) == tmp_path / "checkpoints" / "fold_3.safetensors"
    assert (
        run.checkpoint_path(3, refit=True) == tmp_path / "checkpoints" / "fold_3_refit.safetensors"
    )
    assert run.checkpoints_dir == tmp_path / "checkpoints"
    assert run.model_dir == tmp_path / "model"
    assert run.fold_dir(2) == tmp_path / "model" / "fold_2"
    assert run.explanations_dir == tmp_path / "explanations"
    assert run.plots_dir == tmp_path / "plots"
    assert (run.config_path, run.metrics_path) == (
        tmp_path / "config.yaml",
        tmp_path / "metrics.json",
    )
    assert (run.predictions_path, run.history_path) == (
        tmp_path / "predictions.csv",
        tmp_path / "history.csv",
    )
    assert not any(tmp_path.iterdir())  # naming a path creates nothing


# ------------------------------------------------------------------------------ atomicity
def test_atomic_writers_leave_no_temporary_file(tmp_path):
    atomic_write_text(tmp_path / "sub" / "a.txt", "héllo")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_csv(tmp_path / "c.csv", pd.DataFrame({"x": [1, 2]}))
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.csv").read_text() == "x\n1\n2\n"
    assert tmp_files(tmp_path) == []


def test_a_failed_rename_keeps_the_old_file(run, monkeypatch):
    run.write_metrics({"c_index": 0.6})

    def broken_replace(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        run.write_metrics({"c_index": 0.9})
    monkeypatch.undo()
    assert run.read_metrics() == {"c_index": 0.6}
    assert tmp_files(run.path) == []


def test_a_writer_that_raises_midway_keeps_the_old_file(run):
    run.write_predictions(predictions())

    class Broken(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            args[0].write("patient_id,fold\nhalf")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        run.write_predictions(Broken({"a": [1]}))
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        run.write_metrics({"bad": object()})
    pd.testing.assert_frame_equal(run.read_predictions(), predictions())
    assert not run.metrics_path.exists()
    assert tmp_files(run.path) == []


def test_json_default_rejects_other_types():
    assert json.dumps({"a": np.int32(1)}, default=json_default) == '{"a": 1}'
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        json_default({1})


# ------------------------------------------------------------------------------ read errors
def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(RunFolderError, match="does not exist"):
        RunFolder(tmp_path / "nope").require()
    assert not RunFolder(tmp_path).is_run()
    with pytest.raises(
        RunFolderError,
        match=r"is not a run folder: config\.yaml is missing\. Train one with `multimodal train",
    ):
        RunFolder(tmp_path).read_config_raw()
    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match="is a file, not a run folder"):
        RunFolder(tmp_path / "file").require()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("endpoint: [os\n", r"config\.yaml cannot be read as YAML"),
        ("- a\n- b\n", r"config\.yaml holds a list, not a mapping"),
        ("_meta: 3\n", r"config\.yaml: _meta holds a int"),
        ("_meta: {schema_version: two}\n", r"config\.yaml: _meta\.schema_version is 'two'"),
    ],
)
def test_bad_config_names_the_file(tmp_path, text, match):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(RunFolderError, match=match):
        RunFolder(tmp_path).schema_version()


def test_the_config_goes_through_upgrade_legacy_config(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("old_key: 1\n")
    monkeypatch.setattr(runfolder, "upgrade_legacy_config", lambda raw: {"new_key": raw["old_key"]})
    assert RunFolder(tmp_path).read_config_raw() == {"new_key": 1}


def test_missing_and_corrupt_run_files(run):
    with pytest.raises(RunFolderError, match=r"metrics\.json is missing: training did not finish"):
        run.read_metrics()
    with pytest.raises(RunFolderError, match=r"predictions\.csv is missing: .*resume"):
        run.read_predictions()
    run.metrics_path.write_text("{not json")
    with pytest.raises(RunFolderError, match=r"metrics\.json is not valid JSON"):
        run.read_metrics()
    run.metrics_path.write_text("[1, 2]")
    with pytest.raises(RunFolderError, match=r"metrics\.json holds a JSON list, not an object"):
        run.read_metrics()
    run.predictions_path.write_text("")
    with pytest.raises(RunFolderError, match=r"predictions\.csv cannot be read as CSV"):
        run.read_predictions()
    run.history_path.write_bytes(b'a,b\n"1,2\n')
    with pytest.raises(RunFolderError, match=r"history\.csv cannot be read as CSV"):
        run.read_history()


def test_corrupt_or_missing_weights_name_the_file(run):
    run.write_fold(0, **fold_files())
    path = run.fold_dir(0) / "weights.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(
        RunFolderError, match=r"weights\.safetensors is not the file this fold wrote.*corrupt"
    ):
        run.read_fold_weights(0)
    meta_path = run.fold_dir(0) / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["weights_sha256"]  # as a release before the hash wrote it
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(RunFolderError, match=r"weights\.safetensors cannot be read as safetensors"):
        run.read_fold_weights(0)
    path.unlink()
    with pytest.raises(
        RunFolderError, match=r"weights\.safetensors is missing: fold 0 is incomplete.*delete"
    ):
        run.read_fold_weights(0)
    with pytest.raises(RunFolderError, match=r"weights\.safetensors is missing: fold 1 did not"):
        run.read_fold_weights(1)
    (run.fold_dir(0) / "model.json").write_text("{")
    with pytest.raises(
        RunFolderError, match=r"model\.json is not valid JSON.*train the fold again"
    ):
        run.read_fold_meta(0)
