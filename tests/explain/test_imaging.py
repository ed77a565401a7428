"""Occlusion saliency with known answers, on a trained CNN, and attention over feature bags."""

from __future__ import annotations

import numpy as np
import torch

from multimodal.data.synth_image import body_mask, lesion_image
from multimodal.explain.imaging import occlusion_saliency


def test_saliency_of_a_region_mean_is_confined_to_the_region():
    box = (slice(2, 6), slice(8, 12), slice(4, 8))

    def risk(x: torch.Tensor) -> torch.Tensor:  # risk = mean intensity in the box
        return x[:, 0][(slice(None), *box)].mean(dim=(1, 2, 3))

    image = torch.ones(1, 16, 16, 16)
    sal = occlusion_saliency(risk, image, mask_size=4, overlap=0.5, baseline=0.0)
    assert sal.shape == (1, 16, 16, 16)
    inside = np.zeros((16, 16, 16), bool)
    inside[box] = True
    assert sal[0][inside].min() > 0.05  # occluding any voxel of the box lowers the risk
    far = np.ones((16, 16, 16), bool)
    far[0:10, 4:16, 0:12] = False  # beyond one occluding box from the region
    assert np.abs(sal[0][far]).max() == 0.0
    # the most salient voxels are the region's
    assert inside[np.unravel_index(np.argmax(sal[0]), inside.shape)]


def test_disjoint_boxes_give_a_coarse_grid_of_blocks():
    """The quick budget (``occlusion_overlap=0``): one box per block, 4 per axis by default."""
    box = (slice(0, 4), slice(4, 8), slice(8, 12))
    calls = []

    def risk(x: torch.Tensor) -> torch.Tensor:  # risk = mean intensity in one block
        calls.append(x.shape[0])
        return x[:, 0][(slice(None), *box)].mean(dim=(1, 2, 3))

    sal = occlusion_saliency(risk, torch.ones(1, 16, 16, 16), overlap=0.0, baseline=0.0)[0]
    expected = np.zeros((16, 16, 16))
    expected[box] = 1.0  # occluding the block removes all of the risk, any other block none
    np.testing.assert_allclose(sal, expected, atol=1e-6)
    assert sum(calls) == 4**3 + 1  # 64 occluded images and the image itself


def test_saliency_of_a_lesion_detector_concentrates_on_the_lesion():
    size = 24

    def image_with(amplitude: float) -> np.ndarray:
        rng = np.random.default_rng(5)
        return lesion_image(rng, size, 3, 0.9, amplitude, body_mask(size, 3))

    img = image_with(30.0)
    lesion = img != image_with(31.0)  # same draws; only lesion voxels depend on the amplitude
    assert 50 < lesion.sum() < 0.2 * img.size
    x = torch.as_tensor(img, dtype=torch.float32)[None]

    def risk(xx: torch.Tensor) -> torch.Tensor:  # bright tissue above soft tissue (40 HU)
        return torch.relu(xx[:, 0] - 90.0).mean(dim=(1, 2, 3))

    sal = occlusion_saliency(risk, x, mask_size=4, overlap=0.5)[0]
    near = (
        torch.nn.functional.max_pool3d(
            torch.as_tensor(lesion, dtype=torch.float32)[None, None], 9, 1, 4
        )[0, 0].numpy()
        > 0
    )  # the lesion and the boxes touching it
    positive = np.clip(sal, 0, None)
    assert positive[near].sum() / positive.sum() > 0.95
    assert sal[lesion].mean() > 10 * np.abs(sal[~near]).mean() + 1e-9


def test_saliency_on_a_trained_cnn(smoke_explanation, smoke_cohort):
    index = smoke_explanation.saliency_index
    assert len(index) == 2 and set(index["modality"]) == {"ct"}
    for row in index.itertuples():
        sal, image = smoke_explanation.saliency[(row.patient_id, "ct")]
        assert sal.shape == image.shape == (1, 8, 8, 8)
        assert np.isfinite(sal).all() and np.abs(sal).max() > 0
        assert row.image_path == str(smoke_cohort.sources["ct"].table.loc[row.patient_id, "path"])


def test_bag_attention_is_a_distribution_over_each_bag(smoke_explanation, smoke_cohort):
    bags = smoke_explanation.bags
    has = smoke_cohort.availability()["wsi"]
    assert set(bags["patient_id"]) == set(has.index[has])
    sums = bags.groupby("patient_id")["attention"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    assert (bags["attention"] >= 0).all()
