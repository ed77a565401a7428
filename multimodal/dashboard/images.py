"""Image slices with a saliency overlay for the patient page.

Volumes are read for display only (nibabel for NIfTI, Pillow for PNG; the model's own loading is
in :mod:`multimodal.encoders.imaging`). A saliency map of any shape (a coarse occlusion grid, or
a voxel map from the explain step) is resized onto the volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["PLANES", "as_volume", "load_volume", "overlay", "resize_map", "slice_of"]

#: plane -> axis of a (x, y, z) volume that is fixed
PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}


def load_volume(path: str | Path) -> np.ndarray:
    """The image as float32: (x, y, z) for a volume, (x, y, 1) for a 2D image."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        data = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    elif name.endswith(".png"):
        from PIL import Image

        data = np.asarray(Image.open(path).convert("L"), dtype=np.float32).T
    else:
        raise ValueError(f"{path.name}: only NIfTI and PNG images are shown in the dashboard")
    data = np.squeeze(data)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise ValueError(f"{path.name}: expected a 2D or 3D image, got shape {data.shape}")
    return data


def as_volume(image: np.ndarray) -> np.ndarray:
    """A preprocessed image (C, *spatial) as a display volume (x, y, z) (channels averaged)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim in (3, 4) and a.shape[0] <= 4:
        a = a.mean(axis=0)
    if a.ndim == 2:
        a = a[:, :, None]
    return a


def resize_map(saliency: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``saliency`` (any shape with the volume's number of axes, a leading channel allowed)
    resized to ``shape`` by linear interpolation."""
    from scipy.ndimage import zoom

    s = np.asarray(saliency, dtype=np.float32)
    flat = len(shape) == 3 and shape[2] == 1  # a 2D image shown as (x, y, 1)
    if s.ndim == len(shape) + 1 or (flat and s.ndim == 3 and s.shape[2] != 1):
        s = s.mean(axis=0)  # channels first: (C, *spatial)
    if flat and s.ndim == 2:
        s = s[:, :, None]
    if s.ndim != len(shape):
        raise ValueError(f"saliency of shape {s.shape} does not fit an image of shape {shape}")
    factors = [t / max(1, n) for t, n in zip(shape, s.shape)]
    out = zoom(s, factors, order=1, mode="nearest", grid_mode=True)
    return out[tuple(slice(0, t) for t in shape)]


def slice_of(volume: np.ndarray, plane: str, index: int | None = None) -> np.ndarray:
    """A 2D slice (rows = vertical axis, for display) through ``plane`` (middle by default)."""
    axis = PLANES[plane]
    if volume.shape[axis] == 1:
        axis = 2
    n = volume.shape[axis]
    i = n // 2 if index is None else int(np.clip(index, 0, n - 1))
    sl = np.take(volume, i, axis=axis)
    return np.flipud(sl.T)


def overlay(
    image: np.ndarray, saliency: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """RGB uint8: the slice in grey with the saliency (red = raises risk, blue = lowers it)."""
    import matplotlib

    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if saliency is not None:
        s = np.asarray(saliency, dtype=np.float32)
        scale = float(np.abs(s).max()) or 1.0
        colors = matplotlib.colormaps["coolwarm"]((s / scale + 1) / 2)[..., :3]
        weight = alpha * np.clip(np.abs(s) / scale, 0, 1)[..., None]
        rgb = (1 - weight) * rgb + weight * colors
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
