"""Reading bags of features from .pt / .npy / .h5 files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.encoders.bags import load_feature_bag
from multimodal.exceptions import DataError

FEATURES = np.arange(12, dtype=np.float32).reshape(4, 3)


def _write(path, kind):
    if kind == "pt":
        torch.save(torch.from_numpy(FEATURES), path)
    elif kind == "pt_dict":
        torch.save({"features": torch.from_numpy(FEATURES), "coords": torch.zeros(4, 2)}, path)
    elif kind == "npy":
        np.save(path, FEATURES[None])  # (1, N, D) is squeezed
    elif kind == "h5":
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "w") as f:
            f["features"] = FEATURES
            f["coords"] = np.zeros((4, 2))


@pytest.mark.parametrize(
    ("kind", "suffix"), [("pt", ".pt"), ("pt_dict", ".pth"), ("npy", ".npy"), ("h5", ".h5")]
)
def test_load_feature_bag(tmp_path, kind, suffix):
    path = tmp_path / f"slide{suffix}"
    _write(path, kind)
    bag = load_feature_bag(path)
    assert bag.dtype == torch.float32
    assert torch.equal(bag, torch.from_numpy(FEATURES))


def test_bad_bags(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"corrupt.pt"):
        load_feature_bag(bad)
    with pytest.raises(DataError, match=r"missing.npy"):
        load_feature_bag(tmp_path / "missing.npy")
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0]]))
    with pytest.raises(DataError, match=r"nan.npy.*NaN"):
        load_feature_bag(tmp_path / "nan.npy")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match=r"cube.npy has shape \(2, 2, 2\)"):
        load_feature_bag(tmp_path / "cube.npy")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"x.csv.*unsupported suffix"):
        load_feature_bag(tmp_path / "x.csv")
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "nofeat.h5", "w") as f:
        f["coords"] = np.zeros((4, 2))
    with pytest.raises(DataError, match=r"nofeat.h5.*'features'"):
        load_feature_bag(tmp_path / "nofeat.h5")
