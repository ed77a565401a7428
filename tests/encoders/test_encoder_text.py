"""Text embeddings (bundled all-MiniLM-L6-v2, no network), their cache and the text encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.encoders import ENCODERS
from multimodal.encoders.text import TextEmbedder, TextTokenizer, default_text_model
from multimodal.exceptions import ConfigError, DataError
from multimodal.types import InputSpec

REPORT = "Invasive ductal carcinoma, grade 3, margins negative. " * 12  # ~ 130 tokens


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    """One embedder (one model load) for the module."""
    emb = TextEmbedder(max_length=32, stride=8, cache_dir=tmp_path_factory.mktemp("cache"))
    emb.model  # noqa: B018 - load once
    return emb


def test_embed_chunks_and_mean(embedder):
    chunks = embedder.embed_chunks([REPORT, "short note"])
    assert chunks[0].shape[0] > 3 and chunks[1].shape == (1, embedder.dim) == (1, 384)
    np.testing.assert_allclose(np.linalg.norm(chunks[0], axis=1), 1.0, atol=1e-5)
    vectors = embedder.embed([REPORT, "short note"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    mean = chunks[0].mean(0)
    np.testing.assert_allclose(vectors[0], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(vectors[1], chunks[1][0], atol=1e-6)


def test_matches_sentence_transformers_pooling(embedder):
    """Mean pooling + L2 norm: similar sentences are closer than unrelated ones."""
    a, b, c = embedder.embed(["tumour in the lung", "lung cancer", "the weather is sunny"])
    assert a @ b > a @ c


def test_second_call_uses_disk_cache(embedder):
    texts = ["cache me: pT2 N1 M0", "and me: no residual tumour"]
    first = embedder.embed_chunks(texts)
    calls = embedder.n_model_calls
    fresh = TextEmbedder(max_length=32, stride=8, cache_dir=embedder.cache_dir.parent)
    again = fresh.embed_chunks(texts)
    assert fresh.n_model_calls == 0 and fresh._model is None  # never even loaded
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    embedder.embed(texts)
    assert embedder.n_model_calls == calls
    other = TextEmbedder(max_length=32, stride=4, cache_dir=embedder.cache_dir.parent)
    assert other.key(texts[0]) != fresh.key(texts[0])  # different settings -> different key
    assert TextEmbedder(max_length=32, stride=8, pooling="cls").key("x") != fresh.key("x")


def test_empty_texts(embedder):
    chunks = embedder.embed_chunks(["", None, float("nan"), "ok"])
    assert [len(c) for c in chunks[:3]] == [0, 0, 0] and len(chunks[3]) == 1
    with pytest.raises(DataError, match=r"positions \[0, 1\]"):
        embedder.embed(["  ", None, "ok"])
    embedder.allow_empty = True
    try:
        out = embedder.embed(["", "ok"])
    finally:
        embedder.allow_empty = False
    assert (out[0] == 0).all() and np.linalg.norm(out[1]) == pytest.approx(1.0, abs=1e-5)


def test_bad_settings():
    with pytest.raises(ConfigError, match="stride"):
        TextEmbedder(max_length=16, stride=20)
    with pytest.raises(ConfigError, match="cannot load text"):
        TextEmbedder("/nonexistent/model").model  # noqa: B018


@pytest.mark.parametrize("name", ["text_mlp", "text_chunks"])
def test_encoders_over_cached_embeddings(embedder, name):
    from multimodal.types import TokenSet

    chunks = embedder.embed_chunks([REPORT, "short note"])
    if name == "text_mlp":
        x = torch.from_numpy(embedder.embed([REPORT, "short note"]))
        spec = InputSpec(kind="text", in_features=384)
    else:
        n = max(len(c) for c in chunks)
        tokens, mask = torch.zeros(2, n, 384), torch.zeros(2, n, dtype=torch.bool)
        for i, c in enumerate(chunks):
            tokens[i, : len(c)], mask[i, : len(c)] = torch.from_numpy(c), True
        x = TokenSet(tokens, mask)
        spec = InputSpec(kind="text", in_features=384, tokens=True)
    enc = ENCODERS.get(name).from_spec(spec, 8)
    out = enc(x)
    assert out.shape == (2, 8)
    out.sum().backward()


def test_text_transformer_finetunes_last_layer():
    tok = TextTokenizer(max_length=16)
    x = tok(["grade 3 carcinoma", None])
    assert x["input_ids"].shape == (2, 16) and x["input_ids"].dtype == torch.long
    enc = ENCODERS.get("text_transformer").from_spec(
        InputSpec(kind="text"), 8, finetune_layers=1, model_name_or_path=default_text_model()
    )
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.encoder.layer.5.") for n in trainable)
    assert not any(n.startswith("model.encoder.layer.4.") for n in trainable)
    assert "head.weight" in trainable
    opt = torch.optim.Adam([p for p in enc.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        loss = enc(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert enc.model.embeddings.training is False  # frozen part: no dropout


def test_dim_of_a_local_model_without_importing_transformers(tmp_path):
    """The embedding size of a local model comes from its config.json: a run whose embeddings
    are all cached (the dashboard's patient page) never imports transformers."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from multimodal.encoders.text import TextEmbedder, default_text_model\n"
        f"e = TextEmbedder(default_text_model(), cache_dir={str(tmp_path)!r})\n"
        "print(e.dim, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["384", "False"]
    # a folder without config.json falls back to transformers' AutoConfig (which then fails)
    with pytest.raises(OSError):
        _ = TextEmbedder(str(tmp_path / "no_model"), cache_dir=tmp_path).dim
