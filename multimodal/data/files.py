"""Modality files: image headers and pixels (NIfTI, PNG, DICOM) and bags of features.

The one owner of these formats below the encoders. :func:`read_feature_bag` is how training
reads a bag (:func:`multimodal.encoders.bags.load_feature_bag` calls it); :func:`image_info`
(header only, cheap: run on every file) and :func:`read_image_array` (the pixels: run on a sample)
are how :func:`multimodal.data.validate` checks images. Training reads images with MONAI's readers
(they resize and rescale); :func:`spatial_axes` is the rule both share: an image has exactly
``spatial_dims`` axes once trailing axes of size 1 are dropped, and a PNG may add a colour axis.

Functions raise :class:`FileProblem` (a ``ValueError``) whose message is the reason alone; the
caller adds the file, row and patient.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multimodal.exceptions import DataError

__all__ = [
    "BAG_SUFFIXES",
    "FileProblem",
    "ImageInfo",
    "bag_tensor",
    "image_info",
    "read_feature_bag",
    "read_image_array",
    "spatial_axes",
]

#: Suffixes :func:`read_feature_bag` reads.
BAG_SUFFIXES = (".pt", ".pth", ".npy", ".npz", ".h5", ".hdf5")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel


class FileProblem(ValueError):
    """A modality file that cannot be used; the message is the reason (without the path)."""


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says.

    Attributes
    ----------
    shape : axes as stored (NIfTI ``(X, Y, Z[, T])``, PNG ``(H, W)``, DICOM ``(rows, columns[,
        slices])``); None when the header does not say (DICOM without pydicom).
    dtype : stored data type, e.g. ``"int16"`` ("" when unknown).
    channels : colour samples per pixel (PNG), else 1.
    """

    shape: tuple[int, ...] | None
    dtype: str = ""
    channels: int = 1


def spatial_axes(shape: tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    """``shape`` without trailing size-1 axes beyond ``spatial_dims`` (what the image loader
    drops too): ``(8, 8, 8, 1)`` -> ``(8, 8, 8)``; a valid image then has ``spatial_dims`` axes."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > spatial_dims and shape[-1] == 1:
        shape = shape[:-1]
    return shape


# --------------------------------------------------------------------------- image headers
def _nifti_info(path: str) -> ImageInfo:
    import nibabel as nib

    try:
        img = nib.load(path)  # reads the header only; the data stay on disk
        shape = tuple(int(s) for s in img.header.get_data_shape())
        dtype = np.dtype(img.header.get_data_dtype())
        # where the data start (the header's vox_offset may read 0 for a single .nii file)
        offset = int(getattr(img.dataobj, "offset", img.header.get_data_offset()))
    except Exception as exc:  # nibabel raises many types on corrupt files
        raise FileProblem(
            f"not a readable NIfTI file ({type(exc).__name__}: {str(exc)[:80]})"
        ) from None
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if path.lower().endswith(".gz"):
        # the gzip trailer holds the uncompressed size (mod 2**32): a cut file ends elsewhere
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", fh.read(4))
        if isize != needed % 2**32:
            try:  # a multi-member gzip is legal: only decoding tells for sure
                np.asanyarray(img.dataobj)
            except Exception as exc:
                raise FileProblem(
                    f"is truncated or corrupt: the header describes {shape} {dtype} voxels "
                    f"but the data cannot be read ({type(exc).__name__}: {str(exc)[:80]})"
                ) from None
    elif os.path.getsize(path) < needed:
        raise FileProblem(
            f"is truncated: {os.path.getsize(path)} bytes, its header describes {shape} "
            f"{dtype} voxels ({needed} bytes)"
        )
    return ImageInfo(shape, str(dtype))


def _png_info(path: str) -> ImageInfo:
    with open(path, "rb") as fh:
        head = fh.read(26)
        fh.seek(max(os.path.getsize(path) - len(_PNG_IEND), 0))
        tail = fh.read()
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise FileProblem("not a PNG file (bad signature or IHDR header)")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if width == 0 or height == 0:
        raise FileProblem(f"PNG header gives size {width}x{height}")
    if tail != _PNG_IEND:
        raise FileProblem("is truncated (the PNG does not end with its IEND chunk)")
    dtype = "uint16" if depth == 16 else "uint8"
    return ImageInfo((int(height), int(width)), dtype, _PNG_CHANNELS.get(colour, 1))


def _dicom_files(path: str) -> list[str]:
    if not os.path.isdir(path):
        return [path]
    files = sorted(
        e.path for e in os.scandir(path) if e.is_file() and e.name.lower().endswith(".dcm")
    )
    if not files:
        raise FileProblem("DICOM series folder holds no .dcm files")
    return files


def _dicom_info(path: str) -> ImageInfo:
    files = _dicom_files(path)
    try:
        import pydicom
    except ImportError:  # optional dependency: fall back to the DICM preamble check
        with open(files[0], "rb") as fh:
            head = fh.read(132)
        if head[128:132] != b"DICM":
            raise FileProblem("no DICM marker (not a DICOM Part 10 file)") from None
        return ImageInfo(None)
    try:
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several types on corrupt files
        raise FileProblem(f"not a readable DICOM file ({type(exc).__name__})") from None
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if not rows or not cols:
        return ImageInfo(None)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    depth = len(files) if os.path.isdir(path) else frames
    shape = (rows, cols, depth) if os.path.isdir(path) or frames > 1 else (rows, cols)
    return ImageInfo(shape, "", int(getattr(ds, "SamplesPerPixel", 1) or 1))


_HEADERS = {"nifti": _nifti_info, "png": _png_info, "dicom": _dicom_info}


def image_info(path: str | Path, fmt: str) -> ImageInfo:
    """Read an image's header (cheap: no pixel data is decoded) and check the file is whole.

    Parameters
    ----------
    path : NIfTI file, PNG file, DICOM file or DICOM series folder.
    fmt : ``"nifti"``, ``"png"`` or ``"dicom"``.

    Raises
    ------
    FileProblem
        Missing, empty, a folder where a file is expected, unreadable header, truncated data
        (NIfTI: file size or gzip trailer against the header; PNG: no IEND chunk).
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileProblem("file not found")
    if fmt != "dicom" and os.path.isdir(path):
        raise FileProblem("is a folder")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise FileProblem("file is empty")
    try:
        return _HEADERS[fmt](path)
    except OSError as exc:
        raise FileProblem(f"cannot be read ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- image pixels
def _dicom_pixels(path: str) -> np.ndarray | None:
    try:
        import pydicom
    except ImportError:
        return None
    slices = []
    for f in _dicom_files(path):
        ds = pydicom.dcmread(f)
        if "PixelData" not in ds:
            raise FileProblem(f"{os.path.basename(f)} holds no pixel data")
        slices.append(np.asarray(ds.pixel_array))
    if len(slices) == 1:
        return slices[0]
    if len({s.shape for s in slices}) > 1:
        raise FileProblem(f"the slices differ in size ({sorted({s.shape for s in slices})})")
    return np.stack(slices, axis=-1)


def read_image_array(path: str | Path, fmt: str) -> np.ndarray | None:
    """Decode an image's pixels (nibabel, PIL, pydicom) as stored, without resizing.

    Returns
    -------
    ndarray (shape as in :class:`ImageInfo`; a colour PNG adds a last axis), or None for DICOM
    when pydicom is not installed.

    Raises
    ------
    FileProblem
        When the data cannot be decoded (truncated, corrupt, no pixel data).
    """
    path = str(path)
    try:
        if fmt == "nifti":
            import nibabel as nib

            return np.asanyarray(nib.load(path).dataobj)
        if fmt == "png":
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                return np.asarray(img)
        return _dicom_pixels(path)
    except FileProblem:
        raise
    except Exception as exc:  # each reader raises its own types on corrupt data
        raise FileProblem(
            f"cannot be decoded ({type(exc).__name__}: {str(exc).strip()[:80]})"
        ) from None


# --------------------------------------------------------------------------- feature bags
def _bag_object(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            if "features" not in obj:
                raise FileProblem(f"dict without a 'features' entry (keys {list(obj)[:10]})")
            obj = obj["features"]
        return obj
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return z["features"] if "features" in z else z[z.files[0]]
    if suffix in (".h5", ".hdf5"):
        from monai.utils import optional_import  # imported here: monai is slow to import

        h5py, has_h5py = optional_import("h5py")
        if not has_h5py:
            raise DataError(f"reading {path} needs h5py: pip install 'multimodal[h5]'")
        with h5py.File(path, "r") as f:
            if "features" not in f:
                raise FileProblem(f"no dataset 'features' (datasets: {list(f.keys())[:10]})")
            return f["features"][()]
    raise FileProblem(f"unsupported suffix {suffix!r}; use {', '.join(BAG_SUFFIXES)}")


def _reason(exc: Exception) -> str:
    """A short reason: torch's weights-only refusal is a paragraph whose cause is near its end."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        cause = next((ln for ln in lines[1:] if not ln.startswith(("Please", "Check"))), "")
        return f"not a plain tensor file, refused by torch.load(weights_only=True): {cause[:80]}"
    return f"{type(exc).__name__}: {lines[0][:100] if lines else ''}"


def bag_tensor(path: str | Path) -> Any:
    """A bag file as a FloatTensor ``(N, D)``: a ``(1, N, D)`` array is squeezed and a vector
    becomes one token ``(1, D)``.

    Raises
    ------
    FileProblem
        Missing or unreadable file (message starts with "cannot be read"), shape other than
        ``(N, D)`` numbers ("has shape ..."), NaN or infinite values ("holds NaN ...").
    DataError
        An ``.h5`` file without h5py installed.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileProblem("not found")
    try:
        raw = _bag_object(path)
        x = raw if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
    except DataError:
        raise
    except FileProblem as exc:
        raise FileProblem(f"cannot be read: {exc}") from None
    except Exception as exc:  # torch, numpy and h5py raise many types on corrupt files
        raise FileProblem(
            f"cannot be read as a {path.suffix} feature file ({_reason(exc)})"
        ) from None
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.dtype == torch.bool or x.is_complex():
        raise FileProblem(
            f"has shape {tuple(x.shape)} and dtype {x.dtype}; expected (N, D) numbers"
        )
    x = x.float()
    bad = ~torch.isfinite(x)
    if bad.any():
        raise FileProblem(f"holds NaN or infinite values ({int(bad.sum())} of {x.numel()})")
    return x


def read_feature_bag(path: str | Path) -> Any:
    """Read a bag of feature vectors: ``.pt``/``.pth`` (tensor or ``{"features": ...}``),
    ``.npy``, ``.npz`` or ``.h5`` (dataset ``"features"``).

    Returns
    -------
    FloatTensor (N, D).

    Raises
    ------
    DataError naming the file when it is missing, unreadable, not 1-3 dimensional or not finite.
    """
    try:
        return bag_tensor(path)
    except FileProblem as exc:
        raise DataError(f"feature bag {path} {exc}") from None
