"""bench/speed_scale.py: every part at tiny sizes, and the docs-section rewrite.

Timings here are only checked for being positive and finite, and for orders that hold on any
machine (a disk cache beats running the model); the benchmark itself is run by hand.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from tests._bench import bench_module


@pytest.fixture(scope="module")
def ss():
    with bench_module("speed_scale") as module:
        yield module


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


def _tiny(ss, **changes):
    return dataclasses.replace(ss.QUICK, **changes)


def _finite_positive(x) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def test_trainer_comparison_same_steps_and_finite_ratios(ss, tmp_path):
    s = _tiny(
        ss,
        trainer_patients=320,
        trainer_genes=20,
        trainer_epochs=3,
        trainer_batch=64,
        trainer_repeats=2,
    )
    out = ss.bench_trainer(s, "cpu", tmp_path)
    rows = {r["loop"]: r for r in out["rows"]}
    ours = [name for name, _, _ in ss.TRAINER_VARIANTS]
    assert list(rows) == [*ours, "plain PyTorch loop", "pycox CoxPH"]
    for name in (*ours, "plain PyTorch loop"):
        assert _finite_positive(rows[name]["s/epoch"])
        assert _finite_positive(rows[name]["× plain loop"])
        assert rows[name]["steps/epoch"] == 256 // 64  # 4/5 of the patients, batches of 64
    assert rows["plain PyTorch loop"]["× plain loop"] == pytest.approx(1.0)
    # the same layers; the trainer's late fusion adds its 64-d "no data" vector
    assert rows[ours[0]]["parameters"] == rows["plain PyTorch loop"]["parameters"] + 64
    assert "took -" not in out["note"]  # the set-up time is never negative
    pycox = rows["pycox CoxPH"]
    if pycox["s/epoch"] is None:  # optional dependency: the row says why
        assert pycox["notes"].startswith("skipped")
    else:
        assert _finite_positive(pycox["× plain loop"])


def test_setup_time_subtracts_the_first_epoch_not_the_median(ss):
    """The set-up before the first epoch: a quick first epoch no longer makes it negative."""
    clock = ss.EpochClock()
    info = type("Info", (), {"seconds": 0.25})()
    clock(info)
    assert clock.first_epoch_s == 0.25
    clock(type("Info", (), {"seconds": 9.0})())
    assert clock.first_epoch_s == 0.25  # only the first counts


def test_text_cache_beats_cold_embedding(ss, tmp_path):
    out = ss.bench_text(_tiny(ss, text_reports=4), "cpu", tmp_path)
    assert out["rows"][0]["input"] == "whole reports"
    for row in out["rows"]:
        assert row["texts"] >= 4
        assert _finite_positive(row["cold texts/s"])
        assert row["cached texts/s"] > row["cold texts/s"]
        assert row["model calls when cached"] == 0


def test_imaging_step_time(ss, tmp_path):
    s = _tiny(ss, image_encoders=("small_cnn", "no_such_net"), image_size=16, image_steps=1)
    rows = {r["encoder"]: r for r in ss.bench_imaging(s, "cpu", tmp_path)["rows"]}
    assert _finite_positive(rows["small_cnn"]["ms/step (fwd+bwd+AdamW)"])
    assert rows["small_cnn"]["parameters"] > 0
    assert rows["no_such_net"]["notes"].startswith("failed")  # reported, the others still run


def test_scale_worker_and_growth(ss, tmp_path):
    s = _tiny(ss, scale_genes=20, scale_embedding=8, scale_epochs=2)
    rows = [ss.scale_worker(n, s, "cpu", tmp_path / str(n)) for n in (200, 400)]
    for row in rows:
        assert _finite_positive(row["s/epoch"])
        assert 0 < row["fit patients/epoch"] < row["patients"]
        assert row["peak RSS MB"] > 0
    assert rows[1]["table MB"] == pytest.approx(2 * rows[0]["table MB"])
    ss.add_growth(rows)
    assert rows[0]["time growth / size growth"] == pytest.approx(1.0)
    assert math.isfinite(rows[1]["time growth / size growth"])


def test_metrics_timed(ss, tmp_path):
    out = ss.bench_metrics(_tiny(ss, scale_sizes=(300, 600)), "cpu", tmp_path)
    assert [r["patients"] for r in out["rows"]] == [300, 600, "growth exponent"]
    keys = ("harrell_c s", "uno_c s", "td_auc s", "integrated_brier_score s", "all four s")
    for row in out["rows"][:2]:
        assert all(_finite_positive(row[key]) for key in keys)
    assert all(math.isfinite(out["rows"][2][key]) for key in keys)


def test_fusion_throughput(ss, tmp_path):
    out = ss.bench_fusion(_tiny(ss, fusion_patients=40, fusion_epochs=2), "cpu", tmp_path)
    (row,) = out["rows"]
    assert row["epochs"] == 2
    assert _finite_positive(row["patients/s"])
    assert row["time per fold s"] > row["s/epoch"]


SECTION = "## Speed and scale"


def test_section_rewrite_replaces_only_its_own_section(ss):
    from _common import replace_section  # the section rewriter every bench script uses

    before = (
        "# Benchmarks\n\n## Demo\n\ndemo text\n\n"
        f"{SECTION}\n\nold figures\n\n### old subsection\n\n```bash\n## a comment, not a heading\n```\n"
        "old tail\n\n## Classical baselines\n\n| a | b |\n\n### Harrell\n\nkept\n"
    )
    new = f"{SECTION}\n\nnew figures\n"
    after = replace_section(before, new)
    assert after == (
        "# Benchmarks\n\n## Demo\n\ndemo text\n\n"
        f"{SECTION}\n\nnew figures\n\n## Classical baselines\n\n| a | b |\n\n### Harrell\n\nkept\n"
    )
    assert replace_section(after, new) == after  # idempotent
    appended = replace_section("# Benchmarks\n\n## Demo\n\nx\n", new)
    assert appended == f"# Benchmarks\n\n## Demo\n\nx\n\n{SECTION}\n\nnew figures\n"
    last = replace_section(f"# B\n\n{SECTION}\n\nold\n", new)
    assert last == f"# B\n\n{SECTION}\n\nnew figures\n"


def test_write_section_and_markdown(ss, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Demo\n\nkeep me\n")
    results = {
        "metrics": {
            "title": "Evaluation metrics",
            "note": "note",
            "rows": [{"patients": 100000, "harrell_c s": 0.51234, "uno_c s": float("nan")}],
        }
    }
    meta = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/speed_scale.py --quick",
        "machine": ss.machine(),
        "device": "cpu",
        "date": "2026-01-01",
        "wall_s": 30.0,
        "quick": True,
    }
    section = ss.markdown_section(results, meta)
    ss.write_section(doc, section)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n## Demo\n\nkeep me\n\n## Speed and scale\n")
    assert "Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/speed_scale.py --quick`" in text
    assert "Smoke run" in text and "date 2026-01-01" in text
    assert "| 100 000 | 0.512 | n/a |" in text
