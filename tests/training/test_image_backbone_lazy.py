"""A loaded run builds its frozen image backbone (and imports MONAI) only when an embedding is not
in the cache: the dashboard's first patient page should not pay for MONAI to compute a cache key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import multimodal
from multimodal.encoders.imaging import SmallCNNEncoder
from multimodal.training.pipelines_image import ImagingPipeline
from multimodal.training.preprocess import PreprocessContext
from tests.training.test_trainer import TINY, tiny_cohort  # noqa: F401 (fixture)

FROZEN = {"name": "small_cnn", "out_dim": 6}


@pytest.fixture(scope="module")
def frozen_run(tiny_cohort, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """One fold trained on clinical data and frozen-backbone CT embeddings cached in ``cache``."""
    root = tmp_path_factory.mktemp("frozen")
    cfg = {
        **TINY,
        "data": {
            **TINY["data"],
            "fold_indices": [0],
            "modalities": ["clinical", "ct"],
            "cache_dir": str(root / "cache"),
            "frozen_image_encoder": FROZEN,
        },
        "encoders": {**TINY["encoders"], "ct": {"name": "image_embedding", "out_dim": 4}},
        "train": {**TINY["train"], "epochs": 1},
    }
    res = multimodal.train(cfg, cohort=tiny_cohort, out=root / "run")
    return res.run_dir, root / "cache"


@pytest.fixture
def builds(monkeypatch):
    """The spatial_dims of every ``small_cnn`` built (the frozen backbones of these tests)."""
    seen: list[int] = []
    init = SmallCNNEncoder.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["spatial_dims"])
        init(self, *args, **kwargs)

    monkeypatch.setattr(SmallCNNEncoder, "__init__", spy)
    return seen


def _saved(run_dir: Path) -> pd.DataFrame:
    """Fold 0's predictions written at training, risks centred as ``predict`` returns them."""
    preds = pd.read_csv(run_dir / "predictions.csv")
    preds = preds[preds.fold == 0].set_index("patient_id")
    center = json.loads((run_dir / "model" / "fold_0" / "model.json").read_text())["risk_center"]
    return preds.assign(risk=preds["risk"] - center)


def _embeddings(cache: Path) -> dict[str, np.ndarray]:
    return {f.name: np.load(f) for f in sorted((cache / "images").rglob("*.npy"))}


def test_the_recorded_backbone_is_saved_with_the_run(frozen_run):
    run_dir, _ = frozen_run
    state = json.loads((run_dir / "model" / "fold_0" / "preprocess.json").read_text())["ct"]
    facts = state["state"]["backbone"]
    assert facts["encoder"] == "SmallCNNEncoder" and facts["out_dim"] == 6
    assert len(facts["fingerprint"]) == 64 and facts["image_size"] == [8, 8, 8]
    assert facts["config"] == {**FROZEN, "options": {}} and facts["pretrained"] is None


def test_cached_embeddings_need_no_backbone(frozen_run, tiny_cohort, builds):  # noqa: F811
    run_dir, _ = frozen_run
    model = multimodal.load_run(run_dir)
    frame = model.predict(tiny_cohort).set_index("patient_id")
    assert builds == []
    saved = _saved(run_dir).reindex(frame.index)
    np.testing.assert_allclose(frame["risk"], saved["risk"], rtol=1e-5, atol=1e-6)
    surv = [c for c in frame.columns if c.startswith("surv_")]
    np.testing.assert_allclose(frame[surv], saved[surv], rtol=1e-5, atol=1e-6)


def test_predicting_a_cached_patient_leaves_monai_unimported(frozen_run, tiny_cohort):  # noqa: F811
    """A fresh interpreter, as the dashboard's first page: load the run, predict one patient."""
    run_dir, _ = frozen_run
    pid = str(tiny_cohort.sources["ct"].table.index[0])
    script = textwrap.dedent(
        f"""
        import json, sys
        import multimodal
        cohort = multimodal.Cohort.load({str(tiny_cohort.root)!r})
        frame = multimodal.load_run({str(run_dir)!r}).predict(cohort.subset([{pid!r}]))
        print(json.dumps({{"risk": float(frame["risk"].iloc[0]),
                           "monai": "monai" in sys.modules,
                           "transformers": "transformers" in sys.modules}}))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["monai"] and not out["transformers"]
    assert out["risk"] == pytest.approx(_saved(run_dir).loc[pid, "risk"], rel=1e-5, abs=1e-6)


def test_a_deleted_embedding_is_recomputed(frozen_run, tiny_cohort, tmp_path, builds):  # noqa: F811
    run_dir, cache = frozen_run
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)  # the other tests keep the full cache
    before = _embeddings(copy)
    gone = sorted((copy / "images").rglob("*.npy"))[3]
    gone.unlink()
    model = multimodal.load_run(run_dir)
    model.folds[0].pipelines["ct"].ctx.cache_dir = copy
    frame = model.predict(tiny_cohort).set_index("patient_id")
    assert builds == [3]  # built once, for the missing image only
    after = _embeddings(copy)
    assert after.keys() == before.keys()  # recomputed under the same key
    np.testing.assert_allclose(after[gone.name], before[gone.name], rtol=1e-6, atol=1e-7)
    saved = _saved(run_dir).reindex(frame.index)
    np.testing.assert_allclose(frame["risk"], saved["risk"], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the pipeline alone
def _pipeline_setup(tiny_cohort, cache: Path, frozen: dict):  # noqa: F811
    source = tiny_cohort.sources["ct"]
    ids = list(tiny_cohort.patients.index)
    ctx = PreprocessContext(cache_dir=cache, image_size=8, frozen_image_encoder=frozen)
    pipe = ImagingPipeline(ctx, "image_embedding").fit(source, ids[:50])
    pipe.transform(source, ids)  # every image cached, as after training (validation included)
    return source, ids, json.loads(json.dumps(pipe.state()))


def _reloaded(state: dict, cache: Path, frozen: dict) -> ImagingPipeline:
    """The pipeline as a freshly loaded run holds it: a new context, nothing memoised."""
    ctx = PreprocessContext(cache_dir=cache, image_size=8, frozen_image_encoder=frozen)
    return ImagingPipeline(ctx, "image_embedding").load_state(state)


def _weights(path: Path, seed: int) -> None:
    from multimodal.encoders import ENCODERS
    from multimodal.types import InputSpec

    torch.manual_seed(seed)
    spec = InputSpec(kind="imaging", spatial_dims=3, in_channels=1, image_size=(8, 8, 8))
    torch.save(ENCODERS.get("small_cnn").from_spec(spec, 6).state_dict(), path)


def test_changed_pretrained_weights_are_recomputed(tiny_cohort, tmp_path, builds):  # noqa: F811
    weights = tmp_path / "backbone.pt"
    _weights(weights, seed=1)
    frozen = {**FROZEN, "options": {"pretrained_path": str(weights)}}
    source, ids, state = _pipeline_setup(tiny_cohort, tmp_path / "cache", frozen)
    assert state["backbone"]["pretrained"]["size"] == weights.stat().st_size
    builds.clear()
    old = _reloaded(state, tmp_path / "cache", frozen).transform(source, ids)
    assert builds == []
    # other weights in the same file: the recorded fingerprint no longer holds
    _weights(weights, seed=2)
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    builds.clear()  # _weights built one
    new = _reloaded(state, tmp_path / "cache", frozen).transform(source, ids)
    assert builds == [3]
    assert not np.allclose(new.values.numpy()[new.present], old.values.numpy()[old.present])
    # the same as a model fitted on the new weights would see (same training statistics)
    builds.clear()
    ctx = PreprocessContext(cache_dir=tmp_path / "fresh", image_size=8, frozen_image_encoder=frozen)
    fresh = ImagingPipeline(ctx, "image_embedding").load_state(
        {k: v for k, v in state.items() if k != "backbone"}
    )
    np.testing.assert_allclose(
        new.values.numpy(), fresh.transform(source, ids).values.numpy(), rtol=1e-6, atol=1e-6
    )


def test_states_without_the_facts_or_another_backbone_build_it(tiny_cohort, tmp_path, builds):  # noqa: F811
    source, ids, state = _pipeline_setup(tiny_cohort, tmp_path, FROZEN)
    builds.clear()
    legacy = {k: v for k, v in state.items() if k != "backbone"}  # runs saved before the record
    _reloaded(legacy, tmp_path, FROZEN).transform(source, ids[:5])
    assert len(builds) == 1
    other = {**FROZEN, "options": {"channels": [4, 8]}}  # config edited since training
    _reloaded(state, tmp_path, other).transform(source, ids[:5])
    assert len(builds) == 2
    _reloaded(state, tmp_path, FROZEN).transform(source, ids)
    assert len(builds) == 2
