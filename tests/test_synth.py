"""Tests of the synthetic cohort generator (multimodal.data.synth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from multimodal.data.synth import component_correlation, generate_cohort, reachable_risk
from multimodal.data.synth_image import lesion_image

N_SMALL = 60
SIZE_SMALL = 16


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C (ties in risk count 1/2); O(n^2) numpy, fine for a few thousand patients."""
    time, event, risk = (np.asarray(a, dtype=float) for a in (time, event, risk))
    comparable = (time[:, None] < time[None, :]) & (event[:, None] > 0)
    concordant = (risk[:, None] > risk[None, :]) + 0.5 * (risk[:, None] == risk[None, :])
    return float((concordant * comparable).sum() / comparable.sum())


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "cohort"
    return generate_cohort(out, n_patients=N_SMALL, seed=3, image_size=SIZE_SMALL)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_tab")
    return generate_cohort(out, n_patients=1500, seed=1, missing_rate=0.3, with_images=False)


def test_files_and_manifest(small):
    out = small.out_dir
    manifest = yaml.safe_load(small.manifest_path.read_text())
    assert manifest["version"] == 1
    assert manifest["patients"]["path"] == "patients.csv"
    kinds = {name: m["kind"] for name, m in manifest["modalities"].items()}
    assert kinds == {
        "clinical": "clinical",
        "genomics": "genomics",
        "report": "text",
        "ct": "imaging",
    }
    assert manifest["modalities"]["clinical"]["numeric"] == ["age"]
    assert manifest["modalities"]["clinical"]["categorical"] == ["sex", "stage"]
    assert manifest["modalities"]["ct"]["spatial_dims"] == 3
    for m in manifest["modalities"].values():
        assert (out / m["path"]).is_file()
    assert (out / "ground_truth.csv").is_file()
    groups = pd.read_csv(out / manifest["modalities"]["genomics"]["groups_path"])
    assert 8 <= groups["group"].nunique() <= 10
    genes = pd.read_csv(out / "genomics.csv").columns[1:]
    assert set(groups["feature"]) == set(genes)
    images = pd.read_csv(out / "images.csv")
    assert list(images.columns) == ["patient_id", "path", "format"]
    assert all((out / p).is_file() for p in images["path"])
    assert len(list((out / "images").iterdir())) == len(images)  # no file for a missing patient


def test_patients_and_outcomes(small, tabular):
    for res in (small, tabular):
        p = pd.read_csv(res.out_dir / "patients.csv")
        assert list(p.columns[:3]) == ["patient_id", "time", "event"]
        assert p["patient_id"].is_unique
        assert (p["time"] > 0).all() and set(p["event"]) <= {0, 1}
        assert (p["pfs_time"] <= p["time"]).all()
        assert (p["pfs_event"] == (p["event_type"] > 0)).all()
        death_first = p["event_type"] == 2
        assert (p.loc[death_first, "event"] == 1).all()
        assert np.allclose(p.loc[death_first, "pfs_time"], p.loc[death_first, "time"])
        assert p["site"].nunique() >= 2
    p = pd.read_csv(tabular.out_dir / "patients.csv")
    assert 0.25 <= 1 - p["event"].mean() <= 0.45  # ~30-40 % censored
    gt = tabular.ground_truth
    comps = [c for c in gt.columns if c.startswith("risk_")]
    assert comps == ["risk_clinical", "risk_genomics", "risk_text", "risk_imaging"]
    assert np.allclose(gt[comps].sum(axis=1), gt["true_risk"])


def test_determinism(small, tmp_path):
    again = generate_cohort(tmp_path / "b", n_patients=N_SMALL, seed=3, image_size=SIZE_SMALL)
    files = sorted(p.relative_to(small.out_dir) for p in small.out_dir.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(again.out_dir) for p in again.out_dir.rglob("*") if p.is_file())
    assert files == files_b
    for rel in files:  # byte-for-byte, gzip NIfTI included
        assert (small.out_dir / rel).read_bytes() == (again.out_dir / rel).read_bytes(), rel
    other = generate_cohort(tmp_path / "c", n_patients=N_SMALL, seed=4, with_images=False)
    assert not other.ground_truth["time"].equals(small.ground_truth["time"])


def test_missing_rates(tabular):
    out, n = tabular.out_dir, 1500
    present = {
        "clinical": pd.read_csv(out / "clinical.csv")["patient_id"],
        "genomics": pd.read_csv(out / "genomics.csv")["patient_id"],
        "report": pd.read_csv(out / "reports.csv")["patient_id"].drop_duplicates(),
    }
    assert len(present["clinical"]) == n
    for name in ("genomics", "report"):
        assert abs(1 - len(present[name]) / n - 0.3) < 0.05, name
    assert "ct" not in yaml.safe_load(tabular.manifest_path.read_text())["modalities"]


def test_never_all_missing(tmp_path):
    res = generate_cohort(
        tmp_path, n_patients=200, missing_rate=0.9, clinical_missing_rate=0.9, with_images=False
    )
    ids = set()
    for name in ("clinical.csv", "genomics.csv", "reports.csv"):
        ids |= set(pd.read_csv(tmp_path / name)["patient_id"])
    assert ids == set(res.ground_truth["patient_id"])


def test_ground_truth_c_index(tabular):
    gt = tabular.ground_truth
    c_true = harrell_c(gt["time"], gt["event"], gt["true_risk"])
    assert 0.72 <= c_true <= 0.88
    for comp in ("risk_clinical", "risk_genomics", "risk_text", "risk_imaging"):
        c = harrell_c(gt["time"], gt["event"], gt[comp])
        assert 0.55 <= c <= c_true - 0.05, comp  # informative alone, clearly worse than all
    p = pd.read_csv(tabular.out_dir / "patients.csv")
    assert harrell_c(p["pfs_time"], p["pfs_event"], gt["true_pfs_risk"]) >= 0.7


def test_images_and_lesion_volume(tmp_path):
    nib = pytest.importorskip("nibabel")
    res = generate_cohort(tmp_path, n_patients=80, seed=0, missing_rate=0.0, image_size=24)
    images = pd.read_csv(tmp_path / "images.csv")
    volumes = []
    for rel in images["path"]:
        img = nib.load(tmp_path / rel)
        assert img.shape == (24, 24, 24) and img.get_data_dtype() == np.int16
        volumes.append(int((np.asarray(img.dataobj) > 90).sum()))
    risk = res.ground_truth.set_index("patient_id").loc[images["patient_id"], "risk_imaging"]
    rho = pd.Series(volumes).corr(pd.Series(risk.to_numpy()), method="spearman")
    assert rho > 0.4  # size is half of the imaging component (texture the other half)


def test_lesion_image_2d():
    rng = np.random.default_rng(0)
    img = lesion_image(rng, 32, 2, size=0.9, amplitude=10.0)
    assert img.shape == (32, 32) and img.dtype == np.int16
    assert (img > 90).sum() > 20


def test_png_2d(tmp_path):
    from PIL import Image

    generate_cohort(
        tmp_path, n_patients=10, image_size=SIZE_SMALL, spatial_dims=2, image_format="png"
    )
    manifest = yaml.safe_load((tmp_path / "cohort.yaml").read_text())
    assert manifest["modalities"]["ct"]["spatial_dims"] == 2
    images = pd.read_csv(tmp_path / "images.csv")
    assert set(images["format"]) == {"png"}
    arr = np.asarray(Image.open(tmp_path / images["path"].iloc[0]))
    assert arr.shape == (SIZE_SMALL, SIZE_SMALL) and arr.dtype == np.uint8


def test_reports_are_varied(tabular):
    reports = pd.read_csv(tabular.out_dir / "reports.csv")
    assert list(reports.columns) == ["patient_id", "text", "date", "report_type"]
    assert reports["report_type"].nunique() >= 3
    main = reports[reports["report_type"] != "addendum"]
    assert main["patient_id"].is_unique  # one main report per patient, addenda on top
    assert main["text"].is_unique
    first = reports["text"].str.split(".").str[0]
    assert first.nunique() > 20  # many different openings, not one template
    assert reports["text"].str.contains("lymph node", case=False).mean() > 0.5


def test_feature_bags(tmp_path):
    torch = pytest.importorskip("torch")
    res = generate_cohort(
        tmp_path, n_patients=20, with_images=False, with_feature_bags=True, bag_dim=8
    )
    manifest = yaml.safe_load((tmp_path / "cohort.yaml").read_text())
    assert manifest["modalities"]["wsi"] == {"kind": "feature_bag", "path": "bags.csv"}
    bags = pd.read_csv(tmp_path / "bags.csv")
    sizes = set()
    for rel in bags["path"]:
        x = torch.load(tmp_path / rel)
        assert x.ndim == 2 and x.shape[1] == 8 and x.dtype == torch.float32
        sizes.add(x.shape[0])
    assert len(sizes) > 1
    assert "risk_bags" in res.ground_truth


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_patients": 1}, "n_patients"),
        ({"missing_rate": 1.0}, "missing_rate"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"image_format": "png"}, "spatial_dims=2"),
        ({"n_genes": 5}, "n_genes"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_cohort(tmp_path, **{"n_patients": 10, **kwargs})


def test_loads_with_cohort_reader(small):
    from multimodal.data.cohort import Cohort

    cohort = Cohort.from_manifest(small.manifest_path)
    assert len(cohort.patients) == N_SMALL
    assert set(cohort.modalities) == {"clinical", "genomics", "report", "ct"}
    assert cohort.sources["genomics"].groups
    assert cohort.sources["ct"].spatial_dims == 3
    coverage = cohort.coverage()
    assert list(coverage.index) == ["clinical", "genomics", "report", "ct", "all_modalities"]
    assert coverage.loc["clinical", "n_patients"] == N_SMALL  # clinical is always present
    assert (coverage.n_patients < N_SMALL).sum() >= 3  # the other modalities have missing patients


def test_paths_are_relative(small):
    for name in ("images.csv",):
        paths = pd.read_csv(small.out_dir / name)["path"]
        assert not any(Path(p).is_absolute() for p in paths)


def test_outcomes_do_not_depend_on_files(tmp_path):
    a = generate_cohort(tmp_path / "a", n_patients=30, image_size=8, missing_rate=0.0)
    b = generate_cohort(tmp_path / "b", n_patients=30, missing_rate=0.5, with_images=False)
    pd.testing.assert_frame_equal(a.ground_truth, b.ground_truth)


def test_rerun_into_same_folder_prunes_stale_files(tmp_path):
    generate_cohort(tmp_path, n_patients=30, image_size=8, missing_rate=0.0)
    generate_cohort(tmp_path, n_patients=30, image_size=8, missing_rate=0.5)
    images = pd.read_csv(tmp_path / "images.csv")
    assert len(images) < 30
    assert len(list((tmp_path / "images").iterdir())) == len(images)


SCHEMAS = Path(__file__).resolve().parents[1] / "data_schemas"
_TABLE_SCHEMAS = {
    "patients.csv": "patient_table",
    "clinical.csv": "clinical_table",
    "genomics.csv": "genomics_table",
    "reports.csv": "text_table",
    "images.csv": "imaging_index",
}


@pytest.mark.skipif(not (SCHEMAS / "cohort_manifest.schema.json").is_file(), reason="no schemas")
def test_files_follow_the_json_schemas(small):
    jsonschema = pytest.importorskip("jsonschema")

    def load(name: str) -> dict:
        return yaml.safe_load((SCHEMAS / f"{name}.schema.json").read_text())

    jsonschema.validate(yaml.safe_load(small.manifest_path.read_text()), load("cohort_manifest"))
    for file, schema_name in _TABLE_SCHEMAS.items():
        table = pd.read_csv(small.out_dir / file, dtype={"patient_id": str})
        schema = load(schema_name)
        for row in table.head(10).to_dict("records"):
            jsonschema.validate(row, schema)


def test_modalities_share_a_tumour_burden_but_each_keeps_its_own_signal(tabular):
    gt = tabular.ground_truth
    names = ["clinical", "genomics", "text", "imaging"]
    corr = gt[[f"risk_{k}" for k in names]].corr().to_numpy()
    off = corr[~np.eye(4, dtype=bool)]
    assert off.min() > 0.0 and off.max() < 0.5  # related through the burden, far from redundant
    population = component_correlation(names).to_numpy()
    assert np.abs(corr - population).max() < 0.08  # the cohort's correlations match the population
    assert component_correlation(["clinical", "bags"]).loc["clinical", "bags"] == 0.0


def test_reachable_risk_is_the_truth_when_everything_is_present_and_less_otherwise(tabular):
    gt = tabular.ground_truth.set_index("patient_id")
    names = ["clinical", "genomics", "text", "imaging"]
    everything = pd.DataFrame(True, index=gt.index, columns=names)
    np.testing.assert_allclose(reachable_risk(gt, everything), gt["true_risk"], atol=1e-9)
    no_ct = everything.assign(imaging=False)
    guess = reachable_risk(gt, no_ct)
    zero_filled = gt["true_risk"] - gt["risk_imaging"]
    c = {
        name: harrell_c(gt["time"], gt["event"], r)
        for name, r in [("truth", gt["true_risk"]), ("guess", guess), ("zero", zero_filled)]
    }
    # the imaging component is partly predicted from the others (the shared burden)
    assert c["truth"] > c["guess"] >= c["zero"] - 0.002
    assert (
        np.corrcoef(guess, gt["true_risk"])[0, 1] > np.corrcoef(zero_filled, gt["true_risk"])[0, 1]
    )
