"""Imaging encoders (MONAI), image loading, pretrained weights and the embedding cache."""

from __future__ import annotations

import importlib.util

import nibabel as nib
import numpy as np
import pytest
import torch

from multimodal.encoders import ENCODERS
from multimodal.encoders.imaging import (
    load_image,
    make_image_transforms,
    precompute_image_embeddings,
)
from multimodal.exceptions import ConfigError, DataError
from multimodal.types import InputSpec

SIZE = 16
HAS_EINOPS = importlib.util.find_spec("einops") is not None
SMALL = {
    "small_cnn": {"channels": (4, 8)},
    "densenet": {"init_features": 4, "growth_rate": 4, "block_config": (1, 1)},
    "resnet": {"widen_factor": 0.125},
    "vit": {"patch_size": 8, "hidden_size": 16, "mlp_dim": 16, "num_layers": 1, "num_heads": 2},
}


def _spec(dims: int, channels: int = 1) -> InputSpec:
    return InputSpec(
        kind="imaging", spatial_dims=dims, in_channels=channels, image_size=(SIZE,) * dims
    )


def _build(name: str, dims: int, channels: int = 1, **options):
    if name == "vit" and not HAS_EINOPS:
        pytest.skip("MONAI's ViT needs einops, which is not installed")
    torch.manual_seed(0)
    return ENCODERS.get(name).from_spec(_spec(dims, channels), 4, **{**SMALL[name], **options})


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes(name, dims):
    enc = _build(name, dims, channels=2).eval()
    x = torch.randn(2, 2, *(SIZE,) * dims)
    out = enc(x)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    assert enc.image_size == (SIZE,) * dims
    with pytest.raises(ValueError, match="expects"):
        enc(torch.randn(2, 2, SIZE))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_two_batch_training(name):
    enc = _build(name, 3).train()
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    for seed in range(2):
        x = torch.randn(2, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
        loss = enc(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)
        opt.step()


@pytest.mark.skipif(HAS_EINOPS, reason="einops is installed")
def test_vit_without_einops_says_how_to_fix():
    with pytest.raises(ConfigError, match="pip install einops"):
        ENCODERS.get("vit").from_spec(_spec(3), 4, **SMALL["vit"])


def test_freeze_keeps_backbone_fixed():
    enc = _build("small_cnn", 2, freeze=True).train()
    assert not any(p.requires_grad for p in enc.net.parameters())
    assert all(p.requires_grad for p in enc.head.parameters())
    assert not enc.net.training


@pytest.mark.parametrize("fmt", [".pt", ".safetensors"])
def test_pretrained_path(tmp_path, fmt):
    src = _build("densenet", 2)
    path = tmp_path / f"w{fmt}"
    # a bare MONAI state dict (keys without our "net." prefix), wrapped like a checkpoint
    state = {k.removeprefix("net."): v for k, v in src.state_dict().items() if k.startswith("net.")}
    if fmt == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    torch.manual_seed(1)
    enc = ENCODERS.get("densenet").from_spec(_spec(2), 4, **SMALL["densenet"], pretrained_path=path)
    for k, v in src.net.state_dict().items():
        assert torch.equal(enc.net.state_dict()[k], v)
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=r"no weight in .*bad.pt matches"):
        _build("densenet", 2, pretrained_path=tmp_path / "bad.pt")


def _nifti(path, shape=(20, 18, 12)):
    data = np.random.default_rng(0).random(shape).astype(np.float32) * 100
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_load_nifti_and_corrupt_file(tmp_path):
    img = load_image(_nifti(tmp_path / "ct.nii.gz"), spatial_dims=3, image_size=SIZE)
    assert type(img) is torch.Tensor and img.shape == (1, SIZE, SIZE, SIZE)
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match=r"broken.nii.gz"):
        load_image(bad, 3, SIZE)
    with pytest.raises(DataError, match=r"absent.nii"):
        load_image(tmp_path / "absent.nii", 3, SIZE)
    with pytest.raises(DataError, match="spatial dimensions"):
        load_image(tmp_path / "ct.nii.gz", 2, SIZE)


def test_load_png(tmp_path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((24, 20, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "slide.png"
    )
    img = load_image(tmp_path / "slide.png", 2, (SIZE, 12))
    assert img.shape == (3, SIZE, 12)


def test_train_transforms_on_array():
    t = make_image_transforms(3, SIZE, train=True, crop_foreground=True, normalize="zscore")
    out = t(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    assert out.shape == (1, SIZE, SIZE, SIZE) and torch.isfinite(out).all()


def _nifti_hu(path, array):
    import nibabel as nib

    nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), str(path))
    return path


def test_fixed_intensity_window_keeps_hounsfield_units_comparable(tmp_path):
    """A CT window maps the same HU to the same value in every image; per-image scaling does not."""
    t_window = make_image_transforms(3, 8, train=False, normalize=(-160, 240))
    t_scale = make_image_transforms(3, 8, train=False, normalize="scale")
    body = np.full((8, 8, 8), 40.0, dtype=np.float32)
    body[0] = -1000.0  # air, clipped by the window
    dim, bright = body.copy(), body.copy()
    dim[4, 4, 4], bright[4, 4, 4] = 150.0, 400.0  # lesions of different brightness
    wd, wb = t_window(dim), t_window(bright)
    assert torch.isclose(wd[0, 2, 2, 2], torch.tensor(0.5))  # 40 HU is mid-window
    assert torch.equal(wd[0, 2, 2, 2], wb[0, 2, 2, 2])  # background identical across patients
    assert wd.min() == 0.0 and wb.max() == 1.0  # clipped to [0, 1]
    sd, sb = t_scale(dim), t_scale(bright)
    assert not torch.isclose(sd[0, 2, 2, 2], sb[0, 2, 2, 2])  # per-image scaling shifts tissue
    path = _nifti_hu(tmp_path / "ct.nii.gz", bright)
    loaded = load_image(path, 3, 8, normalize=[-160, 240])  # a list, as YAML gives it
    assert torch.allclose(loaded, t_window(bright), atol=1e-6)
    with pytest.raises(ValueError, match="a_min must be below a_max"):
        make_image_transforms(3, 8, train=False, normalize=(240, -160))
    with pytest.raises(ValueError, match="intensity window"):
        make_image_transforms(3, 8, train=False, normalize="window")


def test_precompute_embeddings_uses_cache(tmp_path):
    paths = [_nifti(tmp_path / f"im{i}.nii.gz", (12 + i, 16, 16)) for i in range(3)]
    enc = _build("small_cnn", 3)
    calls = []
    enc.register_forward_hook(lambda *a: calls.append(1))
    first = precompute_image_embeddings(enc, paths, tmp_path / "cache", batch_size=2)
    assert first.shape == (3, 4) and len(calls) == 2
    again = precompute_image_embeddings(enc, paths, tmp_path / "cache")
    np.testing.assert_array_equal(again, first)
    assert len(calls) == 2  # all from the cache
    precompute_image_embeddings(enc, paths[:1], tmp_path / "cache", image_size=8)
    assert len(calls) == 3  # other settings -> other key
    with torch.no_grad():
        enc.head.bias.add_(1.0)
    precompute_image_embeddings(enc, paths[:1], tmp_path / "cache")
    assert len(calls) == 4  # other weights -> other key
    enc_spec = ENCODERS.get("image_embedding").from_spec(
        InputSpec(kind="imaging", in_features=4), 3
    )
    assert enc_spec(torch.from_numpy(first)).shape == (3, 3)


def test_load_dicom_series_folder(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    series = generate_uid()
    for z in range(4):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = ds.StudyInstanceUID = series
        ds.Modality, ds.Rows, ds.Columns, ds.InstanceNumber = "CT", 10, 12, z + 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, float(z)], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.PixelData = (np.arange(120, dtype=np.uint16).reshape(10, 12) * (z + 1)).tobytes()
        ds.save_as(tmp_path / f"s{z}.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "s0.dcm").Rows == 10
    img = load_image(tmp_path, 3, 8)
    assert img.shape == (1, 8, 8, 8) and torch.isfinite(img).all()


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax"])
@pytest.mark.parametrize("norm", ["batch", "group", "instance", None])
def test_small_cnn_norms_and_pools(norm, pool):
    enc = _build("small_cnn", 3, norm=norm, pool=pool).train()
    out = enc(torch.randn(3, 1, SIZE, SIZE, SIZE))
    assert out.shape == (3, 4) and torch.isfinite(out).all()
    n_features = 8 * (2 if pool == "avgmax" else 1)
    assert enc.head.in_features == n_features


def test_small_cnn_rejects_unknown_norm_and_pool():
    with pytest.raises(ConfigError, match="norm must be"):
        _build("small_cnn", 2, norm="layer")
    with pytest.raises(ConfigError, match="pool must be"):
        _build("small_cnn", 2, pool="sum")


def test_frozen_random_small_cnn_features_keep_lesion_size():
    """With batch norm (the default), even an untrained small CNN's pooled features tell big
    lesions from small ones -- per-image norms (group, instance) standardise that away."""
    from multimodal.data.synth_image import lesion_image

    rng = np.random.default_rng(0)
    sizes = rng.uniform(0.05, 0.95, 80)
    images = np.stack(
        [lesion_image(np.random.default_rng(i), 24, 2, s, 20.0) for i, s in enumerate(sizes)]
    )
    x = torch.from_numpy((images.astype(np.float32) + 1000.0) / 1300.0)[:, None]
    torch.manual_seed(0)
    enc = ENCODERS.get("small_cnn").from_spec(
        InputSpec(kind="imaging", spatial_dims=2, in_channels=1, image_size=(24, 24)), 4
    )
    with torch.no_grad():
        feats = enc.eval().features(x).numpy()
    from sklearn.linear_model import RidgeCV

    feats = (feats - feats[:60].mean(0)) / np.maximum(feats[:60].std(0), 1e-6)
    probe = RidgeCV(alphas=np.logspace(-2, 3, 11)).fit(feats[:60], sizes[:60])
    assert np.corrcoef(probe.predict(feats[60:]), sizes[60:])[0, 1] > 0.8
