"""Imaging encoders (MONAI networks), image loading/transforms and frozen-embedding caching.

Encoders take a float tensor ``(B, in_channels, *image_size)`` (2-D or 3-D by ``spatial_dims``) and
return ``(B, out_dim)``. Each is a backbone ``net`` (features) plus a linear ``head``:

- ``"small_cnn"``: a few strided MONAI convolution blocks + global average pooling (CPU friendly).
- ``"densenet"``: ``monai.networks.nets.DenseNet`` (small by default, ``variant="densenet121"``).
- ``"resnet"``: ``monai.networks.nets.resnet10`` / ``resnet18``.
- ``"vit"``: ``monai.networks.nets.ViT`` (``classification=False``), tokens mean-pooled.
- ``"image_embedding"``: an MLP over cached frozen embeddings ``(B, in_features)``.

All take ``pretrained_path`` (a local state dict, loaded non-strict, see
:func:`~multimodal.encoders.base.load_pretrained`) and ``freeze`` (backbone frozen and kept in
eval mode; the head stays trainable). MONAI is imported when an image encoder is built, not when
this module is imported.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from multimodal import console
from multimodal.data.files import FileProblem, image_info, spatial_axes
from multimodal.encoders.base import (
    ENCODERS,
    ArrayCache,
    Encoder,
    MLPEncoder,
    check_options,
    load_pretrained,
    set_requires_grad,
)
from multimodal.exceptions import ConfigError, DataError
from multimodal.types import InputSpec

__all__ = [
    "DenseNetEncoder",
    "ImageEmbeddingCache",
    "ImageEmbeddingEncoder",
    "ImagingEncoder",
    "ResNetEncoder",
    "SmallCNNEncoder",
    "ViTEncoder",
    "cached_image_embeddings",
    "load_image",
    "make_image_transforms",
    "precompute_image_embeddings",
    "weights_fingerprint",
]

log = logging.getLogger(__name__)


def _size(image_size: int | Sequence[int] | None, spatial_dims: int) -> tuple[int, ...] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (int(image_size),) * spatial_dims
    size = tuple(int(s) for s in image_size)
    if len(size) != spatial_dims:
        raise ConfigError(f"image_size {size} does not have spatial_dims={spatial_dims} entries")
    return size


class ImagingEncoder(Encoder):
    """Base of the image encoders: backbone ``net`` -> features (B, F) -> ``head`` -> (B, out_dim)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_dim: int) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims, self.in_channels, self.out_dim = (
            int(spatial_dims),
            int(in_channels),
            int(out_dim),
        )
        self.image_size: tuple[int, ...] | None = None
        self.frozen = False

    def _finish(self, n_features: int, pretrained_path: str | Path | None, freeze: bool) -> None:
        self.head = nn.Linear(n_features, self.out_dim)
        if pretrained_path is not None:
            load_pretrained(self, pretrained_path, target_prefix="net.")
        if freeze:
            set_requires_grad(self.net, False)
            self.frozen = True
            self.net.eval()

    def train(self, mode: bool = True) -> ImagingEncoder:
        super().train(mode)
        if self.frozen:  # frozen backbone: keep batch-norm statistics fixed
            self.net.eval()
        return self

    @classmethod
    def from_spec(cls, spec: InputSpec, out_dim: int, **options: Any) -> ImagingEncoder:
        """Build from ``spec.spatial_dims``, ``spec.in_channels`` (and ``spec.image_size``)."""
        if spec.spatial_dims is None:
            raise ConfigError(f"{cls.__name__} needs InputSpec.spatial_dims (2 or 3)")
        kwargs: dict[str, Any] = {
            "spatial_dims": spec.spatial_dims,
            "in_channels": spec.in_channels,
        }
        if "image_size" in inspect.signature(cls.__init__).parameters:
            kwargs["image_size"] = spec.image_size
        check_options(cls, options, skip=(*kwargs, "out_dim"))
        enc = cls(**kwargs, out_dim=out_dim, **options)
        if enc.image_size is None and spec.image_size is not None:
            enc.image_size = tuple(int(s) for s in spec.image_size)
        return enc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, F)."""
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, *spatial) float -> (B, out_dim)."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"{type(self).__name__} expects (B, C, {'H, W' if self.spatial_dims == 2 else 'D, H, W'}), "
                f"got shape {tuple(x.shape)}"
            )
        return self.head(self.features(x.float()))


@ENCODERS.register("small_cnn")
class SmallCNNEncoder(ImagingEncoder):
    """Strided convolution blocks (MONAI ``Convolution``: conv -> norm -> PReLU) + global pooling.

    Parameters
    ----------
    spatial_dims, in_channels : MONAI geometry arguments.
    out_dim : embedding size.
    channels : output channels of the blocks; each block halves the resolution.
    dropout : dropout before the head.
    norm : ``"batch"`` (default), ``"group"``, ``"instance"`` or ``None``. Group and instance
        norms standardise each image's activations on their own, which removes how *much* of an
        image is bright (a lesion's volume) -- often the prognostic signal; batch norm keeps it.
    pool : ``"avg"``, ``"max"`` or ``"avgmax"`` (both, concatenated) global pooling.
    pretrained_path, freeze : see the module docstring.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_dim: int = 32,
        channels: Sequence[int] = (8, 16, 32),
        dropout: float = 0.1,
        norm: Literal["batch", "group", "instance"] | None = "batch",
        pool: Literal["avg", "max", "avgmax"] = "avgmax",
        pretrained_path: str | Path | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_dim)
        from monai.networks.blocks import Convolution

        if norm not in ("batch", "group", "instance", None):
            raise ConfigError(f"norm must be 'batch', 'group', 'instance' or null, got {norm!r}")
        if pool not in ("avg", "max", "avgmax"):
            raise ConfigError(f"pool must be 'avg', 'max' or 'avgmax', got {pool!r}")
        blocks: list[nn.Module] = []
        c_in = self.in_channels
        for c in channels:
            block_norm: Any = norm
            if norm == "group":
                block_norm = ("group", {"num_groups": max(1, min(4, c // 2))})
            blocks.append(
                Convolution(spatial_dims, c_in, c, strides=2, kernel_size=3, norm=block_norm)
            )
            c_in = c
        self.net = nn.Sequential(
            *blocks, _GlobalPool(spatial_dims, pool), nn.Flatten(), nn.Dropout(dropout)
        )
        self._finish(c_in * (2 if pool == "avgmax" else 1), pretrained_path, freeze)


class _GlobalPool(nn.Module):
    """Global average, max, or both (concatenated) over the spatial axes: (B, C, *S) -> (B, C')."""

    def __init__(self, spatial_dims: int, mode: str) -> None:
        super().__init__()
        self.dims, self.mode = tuple(range(2, 2 + spatial_dims)), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.mode in ("avg", "avgmax"):
            parts.append(x.mean(dim=self.dims))
        if self.mode in ("max", "avgmax"):
            parts.append(x.amax(dim=self.dims))
        return torch.cat(parts, dim=1)


@ENCODERS.register("densenet")
class DenseNetEncoder(ImagingEncoder):
    """MONAI DenseNet backbone.

    Parameters
    ----------
    variant : ``"small"`` (``init_features``, ``growth_rate``, ``block_config`` below) or
        ``"densenet121"`` (64, 32, (6, 12, 24, 16)).
    dropout_prob : MONAI's dropout inside dense layers.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_dim: int = 32,
        variant: Literal["small", "densenet121"] = "small",
        init_features: int = 16,
        growth_rate: int = 8,
        block_config: Sequence[int] = (2, 2, 2),
        dropout_prob: float = 0.0,
        pretrained_path: str | Path | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_dim)
        from monai.networks.nets import DenseNet

        if variant == "densenet121":
            init_features, growth_rate, block_config = 64, 32, (6, 12, 24, 16)
        elif variant != "small":
            raise ConfigError(f"unknown densenet variant {variant!r}; use 'small' or 'densenet121'")
        self.net = DenseNet(
            spatial_dims,
            self.in_channels,
            out_channels=1,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=tuple(block_config),
            dropout_prob=dropout_prob,
        )
        n_features = self.net.class_layers.out.in_features
        self.net.class_layers.out = nn.Identity()
        self._finish(n_features, pretrained_path, freeze)


@ENCODERS.register("resnet")
class ResNetEncoder(ImagingEncoder):
    """MONAI ResNet-10/18 backbone (``feed_forward=False``: pooled features).

    Parameters
    ----------
    depth : 10 or 18.
    widen_factor : MONAI's channel multiplier (< 1 for a lighter CPU network; pretrained
        MedicalNet weights need 1.0).
    shortcut_type : MONAI's ``"A"`` or ``"B"``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_dim: int = 32,
        depth: Literal[10, 18] = 10,
        widen_factor: float = 1.0,
        shortcut_type: Literal["A", "B"] = "B",
        pretrained_path: str | Path | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_dim)
        from monai.networks import nets

        if int(depth) not in (10, 18):
            raise ConfigError(f"resnet depth must be 10 or 18, got {depth}")
        factory = nets.resnet10 if int(depth) == 10 else nets.resnet18
        self.net = factory(
            spatial_dims=spatial_dims,
            n_input_channels=self.in_channels,
            feed_forward=False,
            widen_factor=widen_factor,
            shortcut_type=shortcut_type,
        )
        with torch.no_grad():
            shape = (1, self.in_channels) + (16,) * spatial_dims
            n_features = int(self.net.eval()(torch.zeros(shape)).shape[1])
        self.net.train()
        self._finish(n_features, pretrained_path, freeze)


@ENCODERS.register("vit")
class ViTEncoder(ImagingEncoder):
    """MONAI ViT (``classification=False``); the patch tokens are mean-pooled.

    Parameters
    ----------
    image_size : input size (``InputSpec.image_size``); ``patch_size`` must divide it.
    patch_size, hidden_size, mlp_dim, num_layers, num_heads, dropout_rate : MONAI ViT arguments
        (small defaults).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_dim: int = 32,
        image_size: int | Sequence[int] | None = None,
        patch_size: int | Sequence[int] = 8,
        hidden_size: int = 64,
        mlp_dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout_rate: float = 0.0,
        pretrained_path: str | Path | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_dim)
        from monai.networks.nets import ViT
        from monai.utils import optional_import

        if not optional_import("einops")[1]:
            raise ConfigError(
                "the 'vit' encoder needs einops (used by MONAI's ViT): pip install einops"
            )
        size = _size(image_size, spatial_dims)
        patch = _size(patch_size, spatial_dims)
        if size is None:
            raise ConfigError("vit needs image_size (InputSpec.image_size)")
        if any(s % p for s, p in zip(size, patch, strict=True)):
            raise ConfigError(f"vit patch_size {patch} must divide image_size {size}")
        self.image_size = size
        self.net = ViT(
            self.in_channels,
            img_size=size,
            patch_size=patch,
            hidden_size=hidden_size,
            mlp_dim=mlp_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            classification=False,
            dropout_rate=dropout_rate,
            spatial_dims=spatial_dims,
        )
        self._finish(hidden_size, pretrained_path, freeze)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.net(x)
        return tokens.mean(dim=1)


@ENCODERS.register("image_embedding")
class ImageEmbeddingEncoder(MLPEncoder):
    """MLP over cached frozen image embeddings (:func:`precompute_image_embeddings`):
    (B, in_features) -> (B, out_dim)."""


# --------------------------------------------------------------------------- loading, transforms
_READERS = {".nii": "NibabelReader", ".gz": "NibabelReader", ".dcm": "PydicomReader",
             ".png": "PILReader", ".jpg": "PILReader", ".jpeg": "PILReader", ".npy": "NumpyReader",
             ".npz": "NumpyReader"}  # fmt: skip
_NEEDS = {"PydicomReader": "pydicom", "PILReader": "PIL"}


def _reader_for(path: Path) -> str | None:
    """MONAI reader name for a path (a folder is a DICOM series); None = let MONAI choose."""
    name = "PydicomReader" if path.is_dir() else _READERS.get(path.suffix.lower())
    if name in _NEEDS:
        from monai.utils import optional_import

        if not optional_import(_NEEDS[name])[1]:
            raise DataError(f"reading {path} needs {_NEEDS[name]}: pip install {_NEEDS[name]}")
    return name


class _ToImage:
    """Path -> MONAI ``LoadImage`` (channel first); array -> float tensor with a channel axis."""

    def __init__(self, spatial_dims: int, reader: Any = None) -> None:
        self.spatial_dims, self.reader = spatial_dims, reader
        self._loaders: dict[Any, Any] = {}

    def _load(self, path: Path) -> Any:
        from monai.transforms import LoadImage

        reader = self.reader if self.reader is not None else _reader_for(path)
        if reader not in self._loaders:
            with warnings.catch_warnings():  # LoadImage probes every reader, GPU codecs included
                warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
                self._loaders[reader] = LoadImage(
                    reader=reader, image_only=True, ensure_channel_first=True
                )
        return self._loaders[reader](str(path))

    def __call__(self, data: Any) -> Any:
        if isinstance(data, (str, os.PathLike)):
            img = self._load(Path(data))
        else:
            img = torch.as_tensor(np.asarray(data), dtype=torch.float32)
            if img.dim() == self.spatial_dims:
                img = img.unsqueeze(0)
        while img.dim() > self.spatial_dims + 1 and img.shape[-1] == 1:  # (X, Y, 1) slices
            img = img[..., 0]
        if img.dim() != self.spatial_dims + 1:
            raise ValueError(
                f"image has shape {tuple(img.shape)} (channel first); expected "
                f"{self.spatial_dims} spatial dimensions"
            )
        return img


def make_image_transforms(
    spatial_dims: int,
    image_size: int | Sequence[int],
    train: bool,
    augment: bool = True,
    normalize: Literal["scale", "zscore"] | Sequence[float] = "scale",
    crop_foreground: bool = False,
    reader: Any = None,
) -> Any:
    """MONAI ``Compose`` turning a file path (NIfTI, DICOM series folder, PNG) or an array into a
    float tensor ``(C, *image_size)``.

    Parameters
    ----------
    spatial_dims : 2 or 3.
    image_size : output size (an int applies to every axis).
    train : add random augmentation (when ``augment``): flips, small affine, Gaussian noise,
        intensity scaling.
    normalize : ``"scale"`` -> each image's own min..max to [0, 1]; ``"zscore"`` -> per channel
        mean 0 / sd 1; ``(a_min, a_max)`` -> a fixed intensity window to [0, 1], clipped (CT in
        Hounsfield units, e.g. ``(-160, 240)`` for soft tissue). A fixed window keeps intensities
        comparable between patients; per-image scaling divides by each image's brightest voxel.
    crop_foreground : crop to the foreground (intensity > 0) before resizing.
    reader : MONAI reader (name, class or instance); None lets MONAI pick by file suffix
        (nibabel for NIfTI, pydicom for DICOM folders, PIL for PNG) among installed ones.
    """
    from monai import transforms as T

    size = _size(image_size, spatial_dims)
    steps: list[Any] = [_ToImage(spatial_dims, reader)]
    if crop_foreground:
        steps.append(T.CropForeground(allow_smaller=True))
    if isinstance(normalize, str):
        if normalize not in ("scale", "zscore"):
            raise ValueError(
                f"normalize is {normalize!r}; use 'scale', 'zscore' or an intensity window "
                "[a_min, a_max]"
            )
        steps.append(
            T.ScaleIntensity() if normalize == "scale" else T.NormalizeIntensity(channel_wise=True)
        )
    else:
        a_min, a_max = (float(v) for v in normalize)
        if not a_min < a_max:
            raise ValueError(f"intensity window {list(normalize)}: a_min must be below a_max")
        steps.append(T.ScaleIntensityRange(a_min, a_max, 0.0, 1.0, clip=True))
    steps.append(T.Resize(spatial_size=size))
    if train and augment:
        steps += [
            T.RandFlip(prob=0.5, spatial_axis=0),
            T.RandAffine(prob=0.3, rotate_range=0.1, scale_range=0.1, padding_mode="zeros"),
            T.RandGaussianNoise(prob=0.2, std=0.02),
            T.RandScaleIntensity(factors=0.1, prob=0.3),
        ]
    steps.append(T.EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False))
    return T.Compose(steps)


_EVAL_TRANSFORMS: dict[tuple, Any] = {}
# MONAI warns once per DICOM reader that the optional GPU codec is absent: not actionable here
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


def _check_nifti_axes(path: Path, spatial_dims: int) -> None:
    """A NIfTI must hold one single-channel image of ``spatial_dims`` axes: MONAI would read a
    4th axis as channels, and one such file among single-channel ones breaks the batch."""
    if not path.name.lower().endswith((".nii", ".nii.gz")) or not path.is_file():
        return
    try:
        shape = image_info(path, "nifti").shape or ()
    except FileProblem as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    axes = spatial_axes(shape, spatial_dims)
    if len(axes) != spatial_dims:
        raise DataError(
            f"image {path} has shape {shape} ({len(axes)} axes), not the modality's {spatial_dims} "
            f"spatial dimensions (spatial_dims); give one single-channel {spatial_dims}-D image per file "
            "(channels or time points in separate files)"
        )


def load_image(
    path: str | Path, spatial_dims: int, image_size: int | Sequence[int], **options: Any
) -> torch.Tensor:
    """Load and resize one image for evaluation (no augmentation).

    Parameters
    ----------
    path : NIfTI file, DICOM series folder or PNG.
    spatial_dims, image_size, options : see :func:`make_image_transforms`.

    Returns
    -------
    FloatTensor (C, *image_size).

    Raises
    ------
    DataError naming the file when it is missing, unreadable, truncated, of the wrong
    dimensionality (a NIfTI with a 4th axis in a 3-D modality) or not finite.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"image {path} not found")
    _check_nifti_axes(path, int(spatial_dims))
    hashable = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    key = (int(spatial_dims), _size(image_size, spatial_dims), tuple(sorted(hashable.items())))
    try:
        if key not in _EVAL_TRANSFORMS:  # building readers is slow: one Compose per setting
            _EVAL_TRANSFORMS[key] = make_image_transforms(
                spatial_dims, image_size, train=False, **options
            )
        img = _EVAL_TRANSFORMS[key](str(path))
    except Exception as e:
        root: BaseException = e
        while root.__cause__ is not None:  # MONAI's Compose wraps the reader's error
            root = root.__cause__
        raise DataError(f"cannot read image {path}: {type(root).__name__}: {root}") from e
    img = torch.as_tensor(img).float()
    if not torch.isfinite(img).all():
        raise DataError(f"image {path} holds NaN or infinite values")
    return img


# --------------------------------------------------------------------------- frozen embeddings
def weights_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's parameter and buffer names, shapes and values."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_stamp(path: Path) -> dict[str, int]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [f.stat() for f in files]
    return {
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        "size": sum(s.st_size for s in stats),
    }


class ImageEmbeddingCache(ArrayCache):
    """One ``.npy`` per (encoder weights, image file, transform settings) under
    ``<cache_dir>/image_embeddings``.

    The key is sha256 of the weights fingerprint, the absolute path, the file's mtime and size
    (for a DICOM folder: the newest mtime and total size) and the transform settings, so a
    changed file, encoder or setting is recomputed.
    """

    def __init__(self, cache_dir: str | Path) -> None:
        super().__init__(Path(cache_dir) / "image_embeddings")

    @staticmethod
    def key(weights_hash: str, path: str | Path, settings: dict[str, Any]) -> str:
        path = Path(path).resolve()
        stamp = _file_stamp(path)
        payload = {"weights": weights_hash, "path": str(path), **stamp, "settings": settings}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _embedding_settings(
    encoder_name: str, spatial_dims: int, size: tuple[int, ...], transform_options: dict[str, Any]
) -> dict[str, Any]:
    """The settings part of an embedding's cache key (see :class:`ImageEmbeddingCache`)."""
    return {
        "spatial_dims": int(spatial_dims),
        "image_size": size,
        **transform_options,
        "encoder": encoder_name,
    }


def cached_image_embeddings(
    paths: Sequence[str | Path],
    cache_dir: str | Path,
    weights_hash: str,
    encoder_name: str,
    spatial_dims: int,
    image_size: int | Sequence[int],
    **transform_options: Any,
) -> list[np.ndarray | None]:
    """The embeddings of ``paths`` already cached on disk, without the encoder.

    Parameters
    ----------
    paths, cache_dir, transform_options : see :func:`precompute_image_embeddings`.
    weights_hash : the encoder's :func:`weights_fingerprint`.
    encoder_name : the encoder's class name (``type(encoder).__name__``).
    spatial_dims, image_size : the images' geometry.

    Returns
    -------
    One float32 array (D,) per path, None where nothing is cached.
    """
    size = _size(image_size, int(spatial_dims))
    settings = _embedding_settings(encoder_name, int(spatial_dims), size, transform_options)
    cache = ImageEmbeddingCache(cache_dir)
    return [cache.get(cache.key(weights_hash, p, settings)) for p in paths]


def precompute_image_embeddings(
    encoder: nn.Module,
    paths: Sequence[str | Path],
    cache_dir: str | Path,
    spatial_dims: int | None = None,
    image_size: int | Sequence[int] | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    weights_hash: str | None = None,
    **transform_options: Any,
) -> np.ndarray:
    """Embed images with a frozen encoder, reusing embeddings cached on disk.

    Parameters
    ----------
    encoder : image encoder (eval mode is used); its output rows are the embeddings.
    paths : image files / DICOM folders.
    cache_dir : cache root (see :class:`ImageEmbeddingCache`).
    spatial_dims, image_size : default to the encoder's ``spatial_dims`` / ``image_size``.
    batch_size, device : inference settings (do not change the cache key).
    weights_hash : the encoder's :func:`weights_fingerprint` when the caller has it already
        (hashing a large backbone's weights takes a while); computed when None.
    transform_options : passed to :func:`load_image`; part of the cache key.

    Returns
    -------
    float32 array (n, D), rows in the order of ``paths``.
    """
    spatial_dims = spatial_dims or getattr(encoder, "spatial_dims", None)
    image_size = image_size or getattr(encoder, "image_size", None)
    if spatial_dims is None or image_size is None:
        raise ConfigError("precompute_image_embeddings needs spatial_dims and image_size")
    size = _size(image_size, int(spatial_dims))
    settings = _embedding_settings(
        type(encoder).__name__, int(spatial_dims), size, transform_options
    )
    cache = ImageEmbeddingCache(cache_dir)
    whash = weights_hash or weights_fingerprint(encoder)
    keys = [cache.key(whash, p, settings) for p in paths]
    out: list[np.ndarray | None] = [cache.get(k) for k in keys]
    todo = [i for i, v in enumerate(out) if v is None]
    log.log(  # all cached: nothing worth a line
        logging.INFO if todo else logging.DEBUG,
        "image embeddings: %d cached, %d to compute",
        len(paths) - len(todo),
        len(todo),
    )
    was_training = encoder.training
    encoder.eval().to(device)
    bar = console.progress(len(todo), "image embeddings", unit="image", enabled=bool(todo))
    try:
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            x = torch.stack(
                [load_image(paths[i], int(spatial_dims), size, **transform_options) for i in idx]
            )
            with torch.no_grad():
                emb = encoder(x.to(device)).float().cpu().numpy()
            for i, e in zip(idx, emb, strict=True):
                cache.put(keys[i], e)
                out[i] = e
            bar.update(len(idx))
    finally:
        bar.close()
        encoder.train(was_training)
    if not out:
        return np.zeros((0, int(getattr(encoder, "out_dim", 0))), dtype=np.float32)
    return np.stack(out).astype(np.float32)
