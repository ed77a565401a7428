"""GPU checks (marker `gpu`; skipped without CUDA): bf16 autocast with a float32 Cox loss, training."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cox_loss_is_float32_under_bf16_autocast():
    from multimodal.survival.losses import cox_nll

    x = torch.randn(256, 16, device="cuda")
    lin = torch.nn.Linear(16, 1).cuda()
    time = torch.rand(256, device="cuda")
    event = torch.rand(256, device="cuda") < 0.3
    with torch.autocast("cuda", dtype=torch.bfloat16):
        risk = lin(x).squeeze(-1)
        assert risk.dtype == torch.bfloat16
        loss = cox_nll(risk, time, event)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()


@cuda
def test_tiny_training_run_on_gpu(tmp_path):
    import multimodal
    from multimodal.data.synth import generate_cohort

    generate_cohort(tmp_path / "c", n_patients=80, seed=0, image_size=16)
    cfg = {
        "data": {"folds": 2, "fold_indices": [0], "image_size": 16},
        "train": {"epochs": 2, "progress": False, "device": "cuda"},
        "eval": {"bootstrap": 0},
    }
    res = multimodal.train(
        cfg, cohort=multimodal.Cohort.load(tmp_path / "c/cohort.yaml"), out=tmp_path / "run"
    )
    assert 0 <= res.c_index <= 1
