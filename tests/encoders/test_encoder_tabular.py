"""Shape tables, training smoke tests and properties of the non-image encoders."""

from __future__ import annotations

import pytest
import torch

from multimodal.encoders import ENCODERS
from multimodal.encoders.clinical import linear_inputs
from multimodal.exceptions import ConfigError
from multimodal.types import InputSpec, TokenSet

B, D = 3, 6


def _tokens(b: int = B, n: int = 5, d: int = D) -> TokenSet:
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 3:] = False  # padding in the first bag
    return TokenSet(torch.randn(b, n, d), mask)


def _clinical(b: int = B) -> dict[str, torch.Tensor]:
    return {
        "numeric": torch.randn(b, 2),
        "numeric_missing": torch.tensor([[0.0, 1.0]] * b),
        "categorical": torch.tensor([[0, 2], [1, 1], [3, 0]])[:b],
    }


CASES = {
    "snn": (InputSpec(kind="genomics", in_features=D), {}, lambda: torch.randn(B, D)),
    "grouped_snn": (
        InputSpec(kind="genomics", in_features=D, groups=[[0, 1], [2, 3, 4], [5]]),
        {},
        lambda: torch.randn(B, D),
    ),
    "grouped_snn_pool": (
        InputSpec(kind="genomics", in_features=D, groups=[[0, 1], [2, 3, 4], [5]]),
        {"pool": True},
        lambda: torch.randn(B, D),
    ),
    "clinical_mlp": (
        InputSpec(kind="clinical", n_numeric=2, cardinalities=[4, 3]),
        {},
        _clinical,
    ),
    "attention_mil": (InputSpec(kind="feature_bag", in_features=D, tokens=True), {}, _tokens),
    "text_mlp": (InputSpec(kind="text", in_features=D), {}, lambda: torch.randn(B, D)),
    "text_chunks": (InputSpec(kind="text", in_features=D, tokens=True), {}, _tokens),
    "image_embedding": (InputSpec(kind="imaging", in_features=D), {}, lambda: torch.randn(B, D)),
}


def _build(case: str, out_dim: int = 4):
    spec, options, make = CASES[case]
    name = case.removesuffix("_pool")
    return ENCODERS.get(name).from_spec(spec, out_dim, **options), make


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes(case):
    enc, make = _build(case)
    enc.eval()
    out = enc(make())
    if enc.returns_tokens:
        assert isinstance(out, TokenSet)
        assert out.tokens.shape == (B, 3, 4) and out.mask.all()
    else:
        assert out.shape == (B, enc.out_dim) == (B, 4)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_batch_training(case):
    torch.manual_seed(0)
    enc, make = _build(case)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    target = torch.randn(B, 4)
    losses = []
    for _ in range(2):
        x = make()
        out = enc(x)
        out = out.tokens.mean(1) if isinstance(out, TokenSet) else out
        loss = ((out - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in enc.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("name", ["attention_mil", "text_chunks"])
def test_attention_weights_sum_to_one_and_ignore_padding(name):
    enc = ENCODERS.get(name)(in_features=D, out_dim=4).eval()
    x = _tokens()
    emb, w = enc.forward_with_attention(x)
    assert emb.shape == (B, 4)
    assert torch.equal(w, enc.last_attention)
    assert torch.allclose(w.sum(1), torch.ones(B), atol=1e-6)
    assert (w[~x.mask] == 0).all()
    # padding values never change the embedding
    x2 = TokenSet(x.tokens.clone(), x.mask)
    x2.tokens[~x.mask] = 1e3
    assert torch.allclose(enc(x2), emb, atol=1e-6)


def test_attention_mil_empty_bag_is_finite():
    enc = ENCODERS.get("attention_mil")(in_features=D, out_dim=4)
    x = TokenSet(torch.randn(2, 3, D), torch.tensor([[True, True, False], [False] * 3]))
    out = enc(x)
    assert torch.isfinite(out).all()
    assert torch.equal(enc.last_attention[1], torch.zeros(3))
    out.sum().backward()


def test_grouped_snn_pooled_attention():
    enc, make = _build("grouped_snn_pool")
    assert not enc.returns_tokens
    enc(make())
    assert torch.allclose(enc.last_attention.sum(1), torch.ones(B), atol=1e-6)


def test_grouped_snn_needs_groups():
    with pytest.raises(ConfigError, match="groups"):
        ENCODERS.get("grouped_snn").from_spec(InputSpec(kind="genomics", in_features=D), 4)


def test_unknown_option_says_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'hidden'"):
        ENCODERS.get("snn").from_spec(InputSpec(kind="genomics", in_features=D), 4, hiden=(8,))


def test_snn_uses_selu_lecun_init():
    enc = ENCODERS.get("snn")(in_features=400, out_dim=4, hidden=(300,))
    lin = enc.net[0][0]
    assert isinstance(enc.net[0][1], torch.nn.SELU)
    assert isinstance(enc.net[0][2], torch.nn.AlphaDropout)
    assert (
        abs(lin.weight.detach().std().item() - 400**-0.5) < 0.005
    )  # LeCun normal: sd = 1/sqrt(fan_in)


def test_clinical_linear_inputs_and_embedding_sizes():
    enc = ENCODERS.get("clinical_mlp").from_spec(
        InputSpec(kind="clinical", n_numeric=2, cardinalities=[4, 3]), 4
    )
    assert [e.embedding_dim for e in enc.embeddings] == [2, 2]
    x = _clinical()
    design = enc.linear_inputs(x)
    assert design.shape == (B, 2 + 4 + 3)
    assert torch.equal(design, linear_inputs(x, [4, 3]))
    assert torch.equal(design[:, 2:].sum(1), torch.full((B,), 2.0))
    x["categorical"][0, 0] = 99  # out of range -> unknown (0)
    assert design[0, 2] == 1 and enc(x).shape == (B, 4)


def test_clinical_numeric_only_and_categorical_only():
    for spec, x in [
        (
            InputSpec(kind="clinical", n_numeric=2),
            {**_clinical(), "categorical": torch.zeros(B, 0)},
        ),
        (
            InputSpec(kind="clinical", cardinalities=[4, 3]),
            {"categorical": _clinical()["categorical"]},
        ),
    ]:
        enc = ENCODERS.get("clinical_mlp").from_spec(spec, 4)
        assert enc(x).shape == (B, 4)
        assert enc.linear_inputs(x).shape == (B, spec.n_numeric + sum(spec.cardinalities))
