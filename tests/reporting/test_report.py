"""``multimodal report``: the page builds on a tiny run, needs nothing from the network, and
every TRIPOD+AI item it claims has a filled section."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from html.parser import HTMLParser

import pytest
import yaml
from typer.testing import CliRunner

from multimodal.cli import app
from multimodal.reporting import REPORT_FILE, TRIPOD_ITEMS, build_report


class _Page(HTMLParser):
    """Sections (``data-tripod`` value -> their text), every src/href, every <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[dict] = []
        self.links: list[str] = []
        self.scripts: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "script":
            self.scripts.append(a)
        if tag == "section":
            s = {"id": a.get("id"), "tripod": a.get("data-tripod"), "text": "", "images": 0}
            self.sections.append(s)
            self._open.append(s)
        if tag == "img" and self._open:
            self._open[-1]["images"] += 1

    def handle_endtag(self, tag):
        if tag == "section" and self._open:
            self._open.pop()

    def handle_data(self, data):
        for s in self._open:
            s["text"] += data


def parse(path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_report_is_written_into_the_run_folder(report_html, tiny_run):
    assert report_html == tiny_run / REPORT_FILE
    assert report_html.stat().st_size > 50_000


def test_report_is_self_contained(report_html):
    page = parse(report_html)
    assert page.links, "the parser saw no src/href at all"
    outside = [u for u in page.links if re.match(r"^(https?:)?//", u.strip(), re.I)]
    assert not outside, f"links leaving the page: {outside}"
    assert all(u.startswith(("data:", "#")) for u in page.links), page.links
    # no script that runs: only the JSON data block
    assert all(s.get("type") == "application/json" and "src" not in s for s in page.scripts)
    text = report_html.read_text()
    assert '<link rel="stylesheet"' not in text and "@import" not in text


def test_every_claimed_tripod_item_has_a_filled_section(report_html):
    page = parse(report_html)
    assert all(s["tripod"] is not None for s in page.sections), "a section lacks data-tripod"
    missing = []
    for item in TRIPOD_ITEMS:
        filled = [
            s
            for s in page.sections
            if item.item in (s["tripod"] or "").split() and len(s["text"].strip()) > 80
        ]
        if not filled:
            missing.append(f"{item.item} ({item.title})")
    assert not missing, f"claimed TRIPOD+AI items without a filled section: {missing}"


def test_the_claimed_items_are_embedded_as_data(report_html):
    text = report_html.read_text()
    block = re.search(
        r'<script type="application/json" id="tripod-items">(.*?)</script>', text, re.S
    )
    claimed = json.loads(block.group(1))
    assert [c["item"] for c in claimed] == [t.item for t in TRIPOD_ITEMS]
    ids = {s["id"] for s in parse(report_html).sections}
    assert {k for t in TRIPOD_ITEMS for k in t.sections} <= ids


def test_sections_hold_the_numbers_they_promise(report_html, tiny_run):
    page = parse(report_html)
    by_id = {s["id"]: s for s in page.sections}
    assert by_id["calibration"]["images"] == 1 and by_id["risk-groups"]["images"] == 1
    assert by_id["robustness"]["images"] == 1
    assert "numbers at risk" in by_id["risk-groups"]["text"].lower()
    disc = by_id["discrimination"]["text"]
    for metric in ("Harrell's C", "Uno's C", "time-dependent AUC"):
        assert metric in disc
    meta = yaml.safe_load((tiny_run / "config.yaml").read_text())["_meta"]
    prov = by_id["provenance"]["text"]
    assert meta["run_id"] in prov and meta["package_version"] in prov
    assert (meta.get("git_sha") or "not recorded") in prov
    assert "predicted by the fold model that did not train" in by_id["calibration"]["text"]
    assert "hidden for everyone" in by_id["robustness"]["text"]
    assert "Internal validation only" in by_id["limits"]["text"]
    assert "could not be computed" not in report_html.read_text()


def test_report_without_its_cohort_still_covers_every_item(tiny_run, tmp_path):
    copy = tmp_path / "moved" / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("checkpoints", REPORT_FILE))
    raw = yaml.safe_load((copy / "config.yaml").read_text())
    raw["_meta"]["cohort_path"] = str(tmp_path / "nowhere")
    (copy / "config.yaml").write_text(yaml.safe_dump(raw))
    out = build_report(copy, out=tmp_path / "r.html", n_boot=0)
    text = out.read_text()
    assert "cohort was not found" in text
    calibration = next(s for s in parse(out).sections if s["id"] == "calibration")["text"]
    assert "interpolated linearly between the run's evaluation times" in calibration
    page = parse(out)
    for item in TRIPOD_ITEMS:
        assert any(
            item.item in (s["tripod"] or "").split() and s["text"].strip() for s in page.sections
        )


def test_cli_report(tiny_run, tmp_path):
    out = tmp_path / "card.html"
    res = CliRunner().invoke(
        app, ["report", str(tiny_run), "--out", str(out), "--no-robustness", "--n-boot", "0"]
    )
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    assert "skipped (--no-robustness)" in out.read_text()


def test_report_of_a_one_fold_run_has_no_numpy_warnings(one_fold_run, tmp_path):
    """45 validation patients: some bootstrap resamples have no event by the first evaluation
    time, where the time-dependent AUC is undefined. They are skipped, not warned about (sksurv
    divides by zero there), and the interval is still given."""
    out = tmp_path / "r.html"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CliRunner().invoke(
            app, ["report", str(one_fold_run), "--out", str(out), "--no-robustness"]
        )
    assert res.exit_code == 0, res.output
    assert not [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not [str(w.message) for w in caught if "td_auc" in str(w.message)]
    disc = next(s for s in parse(out).sections if s["id"] == "discrimination")["text"]
    assert re.search(r"mean time-dependent AUC\s*[0-9.]+\s*[0-9.]+\u2060–\u2060[0-9.]+", disc)


def test_one_fold_shows_its_mean_alone_not_a_zero_sd(one_fold_run, tmp_path):
    """The SD over one fold is undefined: `evaluate` and the report give the mean and
    "(1 fold)", never "± 0.000"."""
    run = tmp_path / "run"
    shutil.copytree(one_fold_run, run, ignore=shutil.ignore_patterns("checkpoints", REPORT_FILE))
    res = CliRunner().invoke(app, ["evaluate", str(run), "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("validation C-index"))
    assert "±" not in line and line.endswith("(1 fold)")
    out = build_report(run, n_boot=0, robustness=False)
    by_id = {s["id"]: s for s in parse(out).sections}
    assert "C-index (1 fold: no SD)" in by_id["summary"]["text"]
    assert "± 0.000" not in by_id["summary"]["text"]
    c = json.loads((run / "metrics.json").read_text())["c_index"]
    per_fold = by_id["discrimination"]["text"].split("Per fold (the run's metrics.json)")[1]
    # columns metric, mean, sd, folds; the cells run together in the page's text
    assert per_fold.startswith(f"metricmeansdfoldsHarrell's C{c:.3f}–{c:.3f}")  # sd: "–"


def test_cli_report_on_a_folder_that_is_not_a_run(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a run folder" in res.output


@pytest.mark.parametrize("bad", ["<b>x</b>", "a & b"])
def test_page_text_is_escaped(bad):
    import pandas as pd

    from multimodal.reporting.page import Section, page, table

    html_text = page(bad, [Section("summary", bad, table(pd.DataFrame({"v": [bad]})))])
    assert bad not in html_text.split("</head>", 1)[1]


def test_cli_report_with_a_cohort_that_does_not_exist(tiny_run, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "report",
            str(tiny_run),
            "--cohort",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "r.html"),
        ],
    )
    assert res.exit_code == 2
    assert "not found" in res.output


def test_the_methods_text_states_the_second_stage_penalty():
    """A stacked run with members.stack_penalty says how its weights were shrunk; one without
    says nothing about it."""
    from multimodal.reporting.methods import _penalty_line

    base = {"linear": ["genomics"], "penalties": [1.0, 1e4], "combine": "stacked"}
    auto = _penalty_line({**base, "stack_penalty": "auto", "stack_penalties": [0.0, 0.1]})
    assert "second stage" in auto and "[0.0, 0.1]" in auto and "cross-validating" in auto
    assert "by 0.3;" in _penalty_line({**base, "stack_penalty": 0.3})
    assert "second stage" not in _penalty_line({**base, "stack_penalty": 0.0})
    assert "second stage" not in _penalty_line({**base, "combine": "joint", "stack_penalty": 1})
    repeated = _penalty_line({**base, "stack_repeats": 3})
    assert "out-of-fold scores of 3 different inner splits and its weights averaged" in repeated
    assert "inner splits" not in _penalty_line({**base, "stack_repeats": 1})
    assert "inner splits" not in _penalty_line({**base, "combine": "joint", "stack_repeats": 3})
    fallback = _penalty_line({**base, "stack_fallback": True})
    assert "no better (Harrell's C, 3-fold cross-validation) than the clinical" in fallback
    assert "clinical covariates alone" not in _penalty_line(base)
    typed = _penalty_line({**base, "column_blocks": {"genomics": ["rnaseq", "mut"]}})
    assert "genomics term is cut into one block per column type (genomics:rnaseq" in typed
    assert "genomics:mut for the columns named ..._mut), each with its own penalty" in typed
    assert "the fold table names the blocks fitted" in typed
    assert "column type" not in _penalty_line(base)
    assert "out-of-fold scores (5 inner folds of the fitting patients)" in _penalty_line(base)
    assert "3-fold cross-validation within" in _penalty_line({**base, "combine": "joint"})


def test_the_methods_text_names_elastic_net_terms_and_the_nested_choice():
    from multimodal.reporting.methods import _penalty_line

    base = {"linear": ["genomics", "report"], "penalties": [1.0, 1e4], "combine": "stacked"}
    net = _penalty_line({**base, "elastic_net": {"genomics": 0.5}})
    assert "Ridge penalties of the linear terms on report:" in net
    assert "the terms on genomics (l1 ratio 0.5) take an elastic-net penalty" in net
    assert "elastic-net" not in _penalty_line(base)
    beside = _penalty_line({**base, "elastic_net": {"genomics": 0.5}, "elastic_net_beside": True})
    assert "Ridge penalties of the linear terms on genomics, report:" in beside
    assert "genomics (l1 ratio 0.5) also get an elastic-net penalty" in beside
    assert "a second member beside the ridge one (named .../net)" in beside
    nested = _penalty_line({**base, "penalty_choice": "nested"})
    assert "each inner fold's come from the penalty chosen on the other inner folds" in nested
    assert "nested" not in _penalty_line({**base, "penalty_choice": "pooled"})


def _members_facts(tmp_path, members: dict, fold_meta: dict | None = None):
    """RunFacts of a Cox run on clinical + genomics with this members block, and no files."""
    import pandas as pd

    from multimodal.reporting.facts import RunFacts

    return RunFacts(
        run_dir=tmp_path,
        config={"members": members, "head": {"name": "cox"}, "fusion": {"name": "concat"}},
        meta={"modalities": ["clinical", "genomics"]},
        metrics={},
        predictions=pd.DataFrame(),
        val=pd.DataFrame(),
        fold_meta=fold_meta or {},
    )


def test_the_members_table_names_folds_that_fell_back_to_the_clinical_covariates(tmp_path):
    """members.stack_fallback: a fold whose second stage lost to the clinical covariates alone
    says so in the report's members table; the other fold shows its weights only."""

    from multimodal.reporting.methods import model_section

    def fit(fallback: bool) -> dict:
        weights = {"genomics": [0.0 if fallback else 0.8]}
        return {"combine": "stacked", "penalties": {"clinical": 0.01, "genomics": 10.0},
                "weights": weights, "loss": 3.0, "fallback": fallback}  # fmt: skip

    members = {"linear": ["genomics"], "combine": "stacked", "stack_fallback": True}
    fold_meta = {0: {"linear_fit": fit(True)}, 1: {"linear_fit": fit(False)}}
    body = model_section(_members_facts(tmp_path, members, fold_meta)).body
    assert body.count("clinical covariates alone: members.stack_fallback") == 1
    assert "genomics=0.8" in body


def test_the_model_section_says_how_the_interaction_products_are_formed(tmp_path):
    """members.interactions: the report names the products and their penalty, for each form."""

    from multimodal.reporting.methods import model_section

    def body(members: dict) -> str:
        return model_section(_members_facts(tmp_path, members)).body

    base = {"linear": ["genomics"], "combine": "stacked"}
    assert "Effect modification" not in body(base)
    pcs = body({**base, "interactions": {"genomics": "stage"}, "interaction_components": 5})
    assert "Effect modification (genomics x stage): the 5 leading principal components" in pcs
    assert "ridge-penalised" in pcs
    net = body(
        {
            **base,
            "interactions": {"genomics": "stage"},
            "interaction_form": "cumulative",
            "interaction_l1_ratio": 0.5,
        }
    )
    assert "every feature times each cumulative level indicator" in net
    assert "elastic-net penalty (l1 ratio 0.5)" in net
    assert "own penalty and stacking weight" in net
    both = body({**base, "interactions": {"genomics": "stage"}, "interaction_form": "both"})
    assert "two blocks: the 5 leading principal components" in both
    assert "every feature times each cumulative level indicator" in both
    assert "each block with its own penalty and stacking weight" in both
    assert "(blocks genomics*stage and genomics*stage&gt;=k)" in both  # HTML-escaped
    # both forms asked, but the column had too few levels for a threshold in every fold
    pcs_only = {"penalties": {"genomics*stage": 1.0}, "weights": {"genomics*stage": [0.4]}}
    both_cfg = {**base, "interactions": {"genomics": "stage"}, "interaction_form": "both"}
    fewer = model_section(_members_facts(tmp_path, both_cfg, {0: {"linear_fit": pcs_only}})).body
    assert "no fold model has the cumulative products" in fewer
    assert "each block" not in fewer and "a block with its own penalty" in fewer
    # joint combining has no stacking weights
    joint = {**base, "combine": "joint", "interactions": {"genomics": "stage"}}
    assert "stacking weight" not in body(joint)
    # the fold models hold no products (GBMLGG has no stage): the report says so
    fit = {"penalties": {"clinical": 0.01, "genomics": 1.0}, "weights": {"genomics": [0.5]}}
    lacking = model_section(
        _members_facts(
            tmp_path, {**base, "interactions": {"genomics": "stage"}}, {0: {"linear_fit": fit}}
        )
    ).body
    assert "was asked for, but no fold model has the products" in lacking
    assert "leading principal components" not in lacking
    fit["penalties"]["genomics*stage"] = 1.0
    having = model_section(
        _members_facts(
            tmp_path, {**base, "interactions": {"genomics": "stage"}}, {0: {"linear_fit": fit}}
        )
    ).body
    assert "Effect modification (genomics x stage): the 5 leading" in having
    from multimodal.reporting.methods import _penalty_line

    cumulative = {**base, "interactions": {"genomics": "stage"}, "interaction_form": "cumulative"}
    assert "Coxnet alpha" in _penalty_line(cumulative)
    assert "Coxnet alpha" not in _penalty_line({**base, "interactions": {"genomics": "stage"}})
    assert "Coxnet alpha" in _penalty_line({**cumulative, "interaction_form": "both"})


def test_the_genomics_preparation_line_names_the_data_types(tmp_path):
    """data.genomics_types: the report says that the cap applies within each data type."""
    import pandas as pd

    from multimodal.reporting.facts import RunFacts
    from multimodal.reporting.methods import _preparation

    def line(data: dict) -> str:
        facts = RunFacts(
            run_dir=tmp_path,
            config={"data": data},
            meta={},
            metrics={},
            predictions=pd.DataFrame(),
            val=pd.DataFrame(),
            fold_meta={0: {"specs": {"genomics": {"in_features": 1850}}}},
        )
        return _preparation(facts, "genomics", "genomics")

    typed = line({"genomics_max_features": 1000, "genomics_types": ["rnaseq", "mut"]})
    assert "1850 features kept (the up to 1000 most variable on the training fold, of each" in typed
    assert "data type: _rnaseq, _mut columns and the rest ranked apart)" in typed
    plain = line({"genomics_max_features": 1000})
    assert "most variable on the training fold), missing values" in plain
    assert "asinh" not in plain
    asinh = line({"genomics_max_features": 1000, "genomics_transform": "asinh"})
    assert asinh.startswith("values mapped through asinh (a log for large values that keeps the")
    assert "sign); 1850 features kept (the up to 1000 most variable" in asinh
    after = line({"genomics_max_features": 1000, "genomics_transform": "asinh_after_selection"})
    assert after.startswith("1850 features kept (the up to 1000 most variable on the training")
    assert (
        "fold), their values mapped through asinh (a log for large values that keeps the" in after
    )
    clip = line({"genomics_max_features": 1000, "genomics_clip": 5.0})
    assert clip.endswith("median, then z-scored and clipped at +-5 SDs")
    assert plain.endswith("then z-scored")
