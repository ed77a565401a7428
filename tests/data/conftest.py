"""Small on-disk cohorts for the data-layer tests."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml


def write_png(path: Path, size: int = 4) -> None:
    """A valid grey-scale PNG of size x size pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + bytes(range(size)) for _ in range(size))
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_nifti(path: Path, size: int = 4) -> None:
    import nibabel as nib

    # a ramp, not zeros: `validate` refuses constant images (a blank export carries no information)
    data = np.arange(size**3, dtype=np.int16).reshape(size, size, size)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def build_cohort(
    root: Path,
    n: int = 12,
    n_genes: int = 6,
    images: bool = True,
    bags: bool = True,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write a small cohort (patients, clinical, genomics + groups, reports, images, bags, folds).

    ``edit`` receives ``{"manifest": dict, "patients": df, "clinical": df, ...}`` and may change
    any of them before they are written. Returns the manifest path.
    """
    rng = np.random.default_rng(0)
    ids = [f"P{i:03d}" for i in range(n)]
    patients = pd.DataFrame(
        {
            "patient_id": ids,
            "time": rng.uniform(1, 60, n).round(2),
            "event": [1, 0] * (n // 2) + [1] * (n % 2),
            "pfs_time": rng.uniform(0.5, 30, n).round(2),
            "pfs_event": rng.integers(0, 2, n),
            "site": [f"S{i % 4}" for i in range(n)],
        }
    )
    clinical = pd.DataFrame(
        {
            "patient_id": ids[:-2],  # two patients lack clinical data
            "age": rng.integers(30, 80, n - 2),
            "sex": rng.choice(["F", "M"], n - 2),
            "stage": rng.choice(["I", "II", "III"], n - 2),
        }
    )
    genes = [f"G{j}" for j in range(n_genes)]
    genomics = pd.DataFrame(rng.normal(size=(n, n_genes)).round(3), columns=genes)
    genomics.insert(0, "patient_id", ids)
    groups = pd.DataFrame({"group": ["a"] * 3 + ["b"] * 3, "feature": genes[:6]})
    reports = pd.DataFrame(
        {
            "patient_id": [ids[0], ids[0], ids[1], ids[2]],
            "text": ["second report", "first report", "only report", "report two"],
            "date": ["2020-05-01", "2019-01-01", "2021-01-01", ""],
            "report_type": ["pathology"] * 4,
        }
    )
    files: dict[str, Any] = {
        "patients": patients,
        "clinical": clinical,
        "genomics": genomics,
        "groups": groups,
        "reports": reports,
    }
    manifest: dict[str, Any] = {
        "version": 1,
        "name": "test-cohort",
        "patients": {"path": "patients.csv", "time_unit": "months"},
        "modalities": {
            "clinical": {
                "kind": "clinical",
                "path": "clinical.csv",
                "numeric": ["age"],
                "categorical": ["sex", "stage"],
            },
            "genomics": {"kind": "genomics", "path": "genomics.csv", "groups_path": "groups.csv"},
            "report": {"kind": "text", "path": "reports.csv"},
        },
    }
    if images:
        (root / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for pid in ids[:3]:
            write_nifti(root / "images" / f"{pid}.nii.gz")
            rows.append((pid, f"images/{pid}.nii.gz"))
        files["images"] = pd.DataFrame(rows, columns=["patient_id", "path"])
        manifest["modalities"]["ct"] = {"kind": "imaging", "path": "images.csv", "spatial_dims": 3}
    if bags:
        (root / "bags").mkdir(parents=True, exist_ok=True)
        rows = []
        for pid in ids[:2]:
            for s in range(2):
                np.save(root / "bags" / f"{pid}_{s}.npy", np.zeros((3, 4), np.float32))
                rows.append((pid, f"bags/{pid}_{s}.npy", f"{pid}-S{s}"))
        files["bags"] = pd.DataFrame(rows, columns=["patient_id", "path", "slide_id"])
        manifest["modalities"]["wsi"] = {"kind": "feature_bag", "path": "bags.csv"}
    files["manifest"] = manifest
    if edit is not None:
        edit(files)
    root.mkdir(parents=True, exist_ok=True)
    for key, value in files.items():
        if isinstance(value, pd.DataFrame):
            value.to_csv(root / f"{key}.csv", index=False)
    path = root / "cohort.yaml"
    path.write_text(yaml.safe_dump(files["manifest"], sort_keys=False))
    return path


@pytest.fixture
def make_cohort(tmp_path: Path) -> Callable[..., Path]:
    """``make_cohort(edit=fn, **kw)`` writes a small cohort under tmp_path; returns the manifest."""
    counter = iter(range(1000))

    def make(**kwargs: Any) -> Path:
        return build_cohort(tmp_path / f"c{next(counter)}", **kwargs)

    return make


@pytest.fixture
def image_writers() -> tuple[Callable[..., None], Callable[..., None]]:
    """``(write_png, write_nifti)``."""
    return write_png, write_nifti
