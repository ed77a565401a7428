"""Fusion shape tables, missing-modality invariance, training smoke tests, modality dropout."""

from __future__ import annotations

import pytest
import torch

from multimodal.exceptions import ConfigError, MissingModalityError
from multimodal.fusion import FUSIONS, modality_dropout
from multimodal.types import TokenSet

B, OUT = 3, 8
IN_DIMS = {"clinical": 4, "genomics": 6, "wsi": 5}
NAMES = ["attention_gated", "concat", "cross_transformer", "kronecker", "late"]
MASKS = {
    "all_present": [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    "some_missing": [[1, 0, 1], [0, 1, 0], [1, 1, 0]],
    "one_without_any": [[1, 1, 1], [0, 0, 0], [0, 1, 1]],
}


def _inputs(seed: int = 0, b: int = B):
    g = torch.Generator().manual_seed(seed)
    tok_mask = torch.ones(b, 4, dtype=torch.bool)
    tok_mask[0, 2:] = False
    return {
        "clinical": torch.randn(b, 4, generator=g),
        "genomics": torch.randn(b, 6, generator=g),
        "wsi": TokenSet(torch.randn(b, 4, 5, generator=g), tok_mask),
    }


def _mask(rows) -> dict[str, torch.Tensor]:
    t = torch.tensor(rows, dtype=torch.bool)
    return {m: t[:, j] for j, m in enumerate(IN_DIMS)}


def _fusion(name: str, **options):
    torch.manual_seed(0)
    return FUSIONS.get(name)(IN_DIMS, OUT, token_inputs={"wsi"}, dropout=0.1, **options)


def test_registry_names():
    assert FUSIONS.names() == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mask", sorted(MASKS))
def test_shapes(name, mask):
    fusion = _fusion(name).eval()
    assert fusion.modality_names == list(IN_DIMS)
    out = fusion(_inputs(), _mask(MASKS[mask]))
    assert out.shape == (B, OUT) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_missing_modality_inputs_are_ignored(name):
    """Changing the values of a missing modality (even to NaN) leaves the output unchanged."""
    fusion = _fusion(name).eval()
    mask = _mask(MASKS["some_missing"])
    x = _inputs(0)
    ref = fusion(x, mask)
    y = _inputs(1)  # every value differs ...
    for m in IN_DIMS:  # ... but present rows are copied back
        keep = mask[m]
        if isinstance(x[m], TokenSet):
            y[m].tokens[keep] = x[m].tokens[keep]
            y[m].tokens[~keep] = float("nan")
            y[m].mask[keep] = x[m].mask[keep]
        else:
            y[m][keep] = x[m][keep]
            y[m][~keep] = float("nan")
    out = fusion(y, mask)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_sample_without_data_gets_no_data_vector(name):
    fusion = _fusion(name).eval()
    with torch.no_grad():
        fusion.no_data.copy_(torch.arange(OUT, dtype=torch.float32))
    out = fusion(_inputs(), _mask(MASKS["one_without_any"]))
    assert torch.equal(out[1], fusion.no_data)
    assert not torch.equal(out[0], fusion.no_data)


@pytest.mark.parametrize("name", NAMES)
def test_two_batch_training(name):
    fusion = _fusion(name).train()
    opt = torch.optim.Adam(fusion.parameters(), lr=1e-2)
    target = torch.randn(B, OUT)
    for step, mask in enumerate(["some_missing", "one_without_any"]):
        x = _inputs(step)
        for m in ("clinical", "genomics"):
            x[m].requires_grad_(True)
        loss = ((fusion(x, _mask(MASKS[mask])) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)
        # no gradient flows into the inputs of missing modalities
        missing = ~_mask(MASKS[mask])["clinical"]
        assert (x["clinical"].grad[missing] == 0).all()
        opt.step()


@pytest.mark.parametrize("name", ["attention_gated", "late"])
def test_modality_weights(name):
    fusion = _fusion(name).eval()
    rows = MASKS["one_without_any"]
    fusion(_inputs(), _mask(rows))
    w = fusion.last_weights
    present = torch.tensor(rows, dtype=torch.bool)
    assert w.shape == (B, 3)
    assert (w[~present] == 0).all()
    assert torch.allclose(w.sum(1), present.any(1).float(), atol=1e-6)


def test_late_is_mean_of_present_heads():
    fusion = _fusion("late").eval()
    x, mask = _inputs(), _mask(MASKS["some_missing"])
    out = fusion(x, mask)
    h = fusion.heads["clinical"](x["clinical"][0:1])
    pooled = x["wsi"].tokens[0, :2].mean(0, keepdim=True)
    expected = (h + fusion.heads["wsi"](pooled)) / 2
    assert torch.allclose(out[0:1], expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["full", "low_rank"])
def test_kronecker_modes(mode):
    fusion = _fusion("kronecker", mode=mode, unimodal_dim=4)
    assert fusion.mode == mode
    assert fusion(_inputs(), _mask(MASKS["some_missing"])).shape == (B, OUT)


def test_kronecker_auto_goes_low_rank_for_many_modalities():
    dims = {f"m{i}": 3 for i in range(5)}
    fusion = FUSIONS.get("kronecker")(dims, OUT)
    assert fusion.mode == "low_rank"  # 9 ** 5 terms would be too many


def test_cross_transformer_pooled_tokens_and_bad_heads():
    fusion = _fusion("cross_transformer", consume_tokens=False).eval()
    assert fusion(_inputs(), _mask(MASKS["all_present"])).shape == (B, OUT)
    with pytest.raises(ConfigError, match="nhead"):
        _fusion("cross_transformer", nhead=3)


def test_fusion_errors():
    fusion = _fusion("concat")
    x, mask = _inputs(), _mask(MASKS["all_present"])
    del mask["genomics"]
    with pytest.raises(MissingModalityError, match="genomics"):
        fusion(x, mask)
    with pytest.raises(ConfigError, match="Did you mean 'concat'"):
        FUSIONS.get("conact")
    with pytest.raises(ConfigError, match="token_inputs"):
        FUSIONS.get("late")(IN_DIMS, OUT, token_inputs={"text"})


def test_modality_dropout_never_drops_last_modality():
    g = torch.Generator().manual_seed(0)
    n = 2000
    present = torch.rand(n, 3, generator=g) < 0.7
    mask = {m: present[:, j] for j, m in enumerate(IN_DIMS)}
    out = modality_dropout(mask, 0.5, generator=g)
    kept = torch.stack([out[m] for m in IN_DIMS], dim=1)
    assert not (kept & ~present).any()  # missing stays missing
    assert torch.equal(kept.any(1), present.any(1))  # last present modality is kept
    rate = 1 - kept.sum() / present.sum()
    assert 0.3 < float(rate) < 0.5  # ~p, a little less because of the rescue
    again = modality_dropout(mask, 0.5, generator=torch.Generator().manual_seed(0))
    assert set(again) == set(mask)
    assert modality_dropout(mask, 0.0)["wsi"].equal(mask["wsi"])
    with pytest.raises(ConfigError):
        modality_dropout(mask, 1.0)
