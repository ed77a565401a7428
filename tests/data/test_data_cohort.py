"""Cohort from a manifest: types at the boundary, sources, coverage, subset/filter, folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from multimodal.data import Cohort, Fold, load_manifest
from multimodal.data.cohort import ALL_MODALITIES
from multimodal.data.manifest import SCHEMA_DIR, load_schema
from multimodal.exceptions import DataError, LeakageError, SchemaError


def test_schema_folder_has_every_schema():
    import jsonschema

    names = {
        "cohort_manifest",
        "patient_table",
        "clinical_table",
        "genomics_table",
        "text_table",
        "imaging_index",
        "feature_bag_index",
    }
    assert {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")} >= names
    for name in names:
        jsonschema.Draft202012Validator.check_schema(load_schema(name))


def test_manifest_loads_and_resolves_paths(make_cohort):
    path = make_cohort()
    m = load_manifest(path)
    assert m.name == "test-cohort"
    assert m.patients["path"] == path.parent.resolve() / "patients.csv"
    assert m.modalities["genomics"]["groups_path"].name == "groups.csv"
    assert list(m.modalities) == ["clinical", "genomics", "report", "ct", "wsi"]


def test_json_manifest_is_accepted(make_cohort):
    path = make_cohort(images=False, bags=False)
    doc = yaml.safe_load(path.read_text())
    jpath = path.with_suffix(".json")
    jpath.write_text(json.dumps(doc))
    assert Cohort.from_manifest(jpath).modalities == ["clinical", "genomics", "report"]


def test_cohort_types_and_sources(make_cohort):
    cohort = Cohort.load(make_cohort())
    pt = cohort.patients
    assert pt.index.name == "patient_id" and len(pt) == 12
    assert pt["time"].dtype == np.float64 and pt["event"].dtype == bool
    assert pt["pfs_event"].dtype == bool and pt["site"].iloc[0] == "S0"
    assert cohort.modalities == ["clinical", "genomics", "report", "ct", "wsi"]
    clin = cohort.sources["clinical"]
    assert (
        clin.kind == "clinical" and clin.numeric == ["age"] and clin.categorical == ["sex", "stage"]
    )
    assert clin.table.index.name == "patient_id" and clin.table["age"].dtype == np.float64
    gen = cohort.sources["genomics"]
    assert (gen.table.dtypes == np.float64).all() and gen.groups == {
        "a": ["G0", "G1", "G2"],
        "b": ["G3", "G4", "G5"],
    }
    ct = cohort.sources["ct"]
    assert ct.spatial_dims == 3 and (ct.table["format"] == "nifti").all()
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in ct.table["path"])
    wsi = cohort.sources["wsi"]
    assert list(wsi.table.columns) == ["patient_id", "path", "slide_id"]
    assert list(wsi.patient_ids) == ["P000", "P001"]
    assert "P000" in cohort.sources["report"].patient_ids


def test_texts_are_joined_in_date_order(make_cohort):
    texts = Cohort.load(make_cohort()).sources["report"].texts()
    assert texts["P000"] == "first report\n\nsecond report"
    assert texts["P002"] == "report two"
    assert texts.index.name == "patient_id" and len(texts) == 3


def test_boolean_events_and_inline_groups(make_cohort):
    def edit(f):
        f["patients"]["event"] = f["patients"]["event"].map({1: "True", 0: "false"})
        f["manifest"]["modalities"]["genomics"] = {
            "kind": "genomics",
            "path": "genomics.csv",
            "groups": {"x": ["G0", "G1"]},
        }

    cohort = Cohort.load(make_cohort(edit=edit, images=False, bags=False))
    assert cohort.patients["event"].tolist()[:2] == [True, False]
    assert cohort.sources["genomics"].groups == {"x": ["G0", "G1"]}


def test_parquet_and_gzip_genomics(make_cohort):
    def edit(f):
        f["manifest"]["modalities"]["genomics"]["path"] = "genomics.parquet"

    path = make_cohort(edit=edit, images=False, bags=False)
    pd.read_csv(path.parent / "genomics.csv", dtype={"patient_id": str}).to_parquet(
        path.parent / "genomics.parquet"
    )
    assert Cohort.load(path).sources["genomics"].table.shape == (12, 6)
    gz = path.parent / "g.csv.gz"
    pd.read_csv(path.parent / "genomics.csv").to_csv(gz, index=False)
    doc = yaml.safe_load(path.read_text())
    doc["modalities"]["genomics"]["path"] = "g.csv.gz"
    path.write_text(yaml.safe_dump(doc))
    assert Cohort.load(path.parent).sources["genomics"].table.shape == (12, 6)


def test_coverage_and_availability(make_cohort):
    cohort = Cohort.load(make_cohort())
    avail = cohort.availability()
    assert avail.shape == (12, 5) and avail.dtypes.eq(bool).all()
    cov = cohort.coverage()
    assert list(cov.index) == [*cohort.modalities, ALL_MODALITIES]
    assert cov.loc["clinical", "n_patients"] == 10 and cov.loc["genomics", "fraction"] == 1.0
    assert cov.loc["report", "n_patients"] == 3 and cov.loc["wsi", "n_patients"] == 2
    assert cov.loc[ALL_MODALITIES, "n_patients"] == 2


def test_subset_and_filter(make_cohort):
    cohort = Cohort.load(make_cohort())
    sub = cohort.subset(["P001", "P000", "P011"])
    assert list(sub.patients.index) == ["P000", "P001", "P011"]
    assert list(sub.sources["wsi"].patient_ids) == ["P000", "P001"]
    assert sub.coverage().loc["clinical", "n_patients"] == 2
    with pytest.raises(DataError, match="not cohort patients"):
        cohort.subset(["nobody"])
    only_s0 = cohort.filter(lambda p: p["site"] == "S0")
    assert set(only_s0.patients["site"]) == {"S0"} and len(only_s0) == 3
    with pytest.raises(TypeError, match="boolean mask"):
        cohort.filter(lambda p: p["time"])


def test_stratified_folds_partition_and_are_seeded(make_cohort):
    cohort = Cohort.load(make_cohort(n=40, images=False, bags=False))
    folds = cohort.folds(k=4, seed=1)
    assert [f.index for f in folds] == [0, 1, 2, 3]
    vals = [v for f in folds for v in f.val_ids]
    assert sorted(vals) == sorted(cohort.patients.index)
    for f in folds:
        assert not set(f.train_ids) & set(f.val_ids)
        assert len(f.train_ids) + len(f.val_ids) == 40
        assert cohort.patients.loc[f.val_ids, "event"].sum() == 5  # 20 events / 4 folds
    assert folds == cohort.folds(k=4, seed=1)
    assert folds != cohort.folds(k=4, seed=2)


def test_grouped_folds_keep_sites_together(make_cohort):
    cohort = Cohort.load(make_cohort(n=40, images=False, bags=False))
    folds = cohort.folds(k=4, seed=0, group_by="site")
    for f in folds:
        val_sites = set(cohort.patients.loc[f.val_ids, "site"])
        train_sites = set(cohort.patients.loc[f.train_ids, "site"])
        assert not val_sites & train_sites
    with pytest.raises(SchemaError, match="Did you mean 'site'"):
        cohort.folds(group_by="sites")
    with pytest.raises(DataError, match="fewer than k"):
        cohort.folds(k=5, group_by="site")


def _write_folds(folder: Path, ids: list[str], k: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(k):
        split = ["val" if j % k == i else "train" for j in range(len(ids))]
        pd.DataFrame({"patient_id": ids, "split": split}).to_csv(
            folder / f"fold_{i}.csv", index=False
        )


def test_fold_files_by_dir_name_and_manifest_default(make_cohort):
    def edit(f):
        f["manifest"]["splits"] = {"folds_dir": "splits/mine"}

    path = make_cohort(edit=edit, images=False, bags=False)
    cohort = Cohort.load(path)
    ids = list(cohort.patients.index)
    _write_folds(path.parent / "splits" / "mine", ids)
    by_default = cohort.folds()
    assert len(by_default) == 3
    assert (
        by_default
        == cohort.folds(name="mine")
        == cohort.folds(split_dir=path.parent / "splits" / "mine")
    )
    assert sorted(v for f in by_default for v in f.val_ids) == sorted(ids)
    assert len(cohort.folds(k=2)) == 2  # an explicit k makes stratified folds
    # fold files may name patients excluded from the cohort after loading
    assert (
        len(cohort.subset(ids[:6]).folds()[0].train_ids)
        + len(cohort.subset(ids[:6]).folds()[0].val_ids)
        == 6
    )
    with pytest.raises(DataError, match="Did you mean 'mine'"):
        cohort.folds(name="mien")


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            lambda df: df.assign(patient_id=df["patient_id"].replace("P001", "XX")),
            DataError,
            "not in the cohort",
        ),
        (lambda df: df[df["patient_id"] != "P001"], DataError, "1 cohort patient.*in no split"),
        (
            lambda df: df.assign(split=df["split"].replace("val", "test")),
            DataError,
            r"split not in \{train, val\}",
        ),
        (
            lambda df: pd.concat([df, df.iloc[:1].assign(split="val")]),
            LeakageError,
            "list a patient twice",
        ),
        (
            lambda df: df.rename(columns={"split": "splt"}),
            SchemaError,
            "column 'split' is missing. Did you mean 'splt'",
        ),
    ],
)
def test_bad_fold_files(make_cohort, tmp_path, change, error, match):
    cohort = Cohort.load(make_cohort(images=False, bags=False))
    folder = tmp_path / "folds"
    _write_folds(folder, list(cohort.patients.index))
    df = pd.read_csv(folder / "fold_1.csv")
    change(df).to_csv(folder / "fold_1.csv", index=False)
    with pytest.raises(error, match=match):
        cohort.folds(split_dir=folder)


def test_fold_overlap_raises_leakage():
    with pytest.raises(LeakageError, match="both train and val"):
        Fold(0, ["a", "b"], ["b", "c"])
