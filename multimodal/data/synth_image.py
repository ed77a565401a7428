"""CT-like images with a textured ellipsoid lesion for the synthetic cohort (`synth`).

The lesion's size and texture amplitude are the imaging risk factors; its position, orientation,
eccentricity and texture pattern are nuisance variation, and the background is noisy soft tissue
(40 HU) inside a body ellipsoid surrounded by air (-1000 HU). Drawing is vectorised over the
lesion's bounding box only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["body_mask", "lesion_image"]

_HU_AIR, _HU_BODY, _HU_LESION = -1000.0, 40.0, 150.0


def body_mask(image_size: int, spatial_dims: int) -> np.ndarray:
    """Bool ellipsoid (ellipse in 2D) "body" filling most of the field of view."""
    c = (image_size - 1) / 2.0
    grid = np.ogrid[tuple(slice(0, image_size) for _ in range(spatial_dims))]
    radii = [0.46, 0.40, 0.46][:spatial_dims]
    q = sum(((g - c) / (r * image_size)) ** 2 for g, r in zip(grid, radii, strict=True))
    return q <= 1.0


def lesion_image(
    rng: np.random.Generator,
    image_size: int,
    spatial_dims: int,
    size: float,
    amplitude: float,
    body: np.ndarray | None = None,
) -> np.ndarray:
    """One CT-like image (HU, int16) with a bright textured ellipsoid lesion.

    Parameters
    ----------
    rng : the patient's generator (position, orientation, shape, texture pattern, noise).
    image_size : side length in voxels; the image has shape ``(image_size,) * spatial_dims``.
    spatial_dims : 2 or 3.
    size : in (0, 1); the lesion's mean radius is ``image_size * (0.05 + 0.13 * size)``.
    amplitude : texture amplitude in HU around the lesion mean of 150 HU.
    body : optional precomputed body mask (:func:`body_mask`), for speed.

    Returns
    -------
    ndarray int16, shape ``(image_size,) * spatial_dims``: air -1000 HU, body 40 HU, noise SD 12 HU.
    """
    shape = (image_size,) * spatial_dims
    body = body_mask(image_size, spatial_dims) if body is None else body
    img = np.where(body, _HU_BODY, _HU_AIR) + 12.0 * rng.standard_normal(shape, dtype=np.float32)
    ecc = rng.uniform(0.7, 1.3, spatial_dims)
    axes = image_size * (0.05 + 0.13 * size) * ecc / np.prod(ecc) ** (1.0 / spatial_dims)
    rot, _ = np.linalg.qr(rng.standard_normal((spatial_dims, spatial_dims)))
    extent = int(np.ceil(axes.max())) + 1
    lo, hi = extent, image_size - 1 - extent
    half = 0.22 * image_size  # keep the lesion inside the body
    centre = rng.uniform(
        max(lo, image_size / 2 - half), min(hi, image_size / 2 + half), spatial_dims
    )
    centre = np.where(lo < hi, centre, (image_size - 1) / 2.0)
    start = np.clip(np.floor(centre - extent).astype(int), 0, image_size)
    stop = np.clip(np.ceil(centre + extent).astype(int) + 1, 0, image_size)
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    grid = np.stack(
        np.meshgrid(*(np.arange(a, b) for a, b in zip(start, stop, strict=True)), indexing="ij"), -1
    )
    local = (grid - centre) @ rot  # coordinates in the lesion's frame, (*box, spatial_dims)
    inside = ((local / axes) ** 2).sum(-1) <= 1.0
    freq = rng.normal(0.0, 1.2, (3, spatial_dims))
    phase = rng.uniform(0.0, 2.0 * np.pi, 3)
    pattern = np.cos(local @ freq.T + phase).sum(-1) / np.sqrt(1.5)
    lesion = _HU_LESION + amplitude * pattern + 8.0 * rng.standard_normal(inside.shape)
    img[box] = np.where(inside, lesion, img[box])
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)
