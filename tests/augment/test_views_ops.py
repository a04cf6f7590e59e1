"""Batched per-sample ops against independent references: torchvision's per-image functional ops and an
explicit bilinear crop written from its definition."""

from __future__ import annotations

import math

import pytest
import torch

from equireg.augment import ops  # imports equireg first, whose shim lets torchvision load on CPU torch

import torchvision.transforms.v2.functional as TF  # noqa: E402  isort: skip

torch.manual_seed(0)
IMAGES = torch.rand(6, 3, 10, 10)
IMAGES[0] = IMAGES[0, :1]  # a grey image (zero chroma) must survive hue rotation
FACTORS = torch.tensor([0.6, 1.0, 1.4, 0.0, 0.9, 1.25])
HUES = torch.tensor([-0.5, -0.1, 0.0, 0.07, 0.25, 0.5])


@pytest.mark.parametrize(
    ("batched", "reference", "factors"),
    [
        (ops.adjust_brightness, TF.adjust_brightness, FACTORS),
        (ops.adjust_contrast, TF.adjust_contrast, FACTORS),
        (ops.adjust_saturation, TF.adjust_saturation, FACTORS),
        (ops.adjust_hue, TF.adjust_hue, HUES),
    ],
)
def test_colour_ops_match_torchvision(batched, reference, factors) -> None:  # type: ignore[no-untyped-def]
    out = batched(IMAGES.clone(), factors)
    expected = torch.stack([reference(img, float(f)) for img, f in zip(IMAGES, factors)])
    assert torch.allclose(out, expected, atol=2e-5), (out - expected).abs().max()


def test_grayscale_blur_solarize_match_torchvision() -> None:
    mask = torch.tensor([1, 0, 1, 0, 1, 1])
    gray = ops.to_grayscale(IMAGES, mask)
    for i, img in enumerate(IMAGES):
        expected = TF.rgb_to_grayscale(img, num_output_channels=3) if mask[i] else img
        assert torch.allclose(gray[i], expected, atol=1e-6)

    sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 1.7, 2.0])
    for k in (3, 5):
        blurred = ops.gaussian_blur(IMAGES, sigma, k)
        for i, img in enumerate(IMAGES):
            expected = TF.gaussian_blur(img, [k, k], [float(sigma[i])] * 2) if sigma[i] > 0 else img
            assert torch.allclose(blurred[i], expected, atol=1e-5)

    sol = ops.solarize(IMAGES, mask, 0.5)
    for i, img in enumerate(IMAGES):
        assert torch.allclose(sol[i], TF.solarize(img, 0.5) if mask[i] else img)


def test_colour_jitter_per_sample_order() -> None:
    factors = torch.tensor([[1.3, 0.7, 1.2, 0.05], [0.8, 1.3, 0.6, -0.08], [1.1, 1.1, 1.1, 0.1]])
    order = torch.tensor([[3, 0, 2, 1], [1, 2, 0, 3], [0, 1, 2, 3]])
    applied = torch.tensor([1.0, 1.0, 0.0])
    refs = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    out = ops.color_jitter(IMAGES[:3], factors, order, applied)
    for i in range(3):
        expected = IMAGES[i]
        if applied[i]:
            for op in order[i].tolist():
                expected = refs[op](expected, float(factors[i, op]))
        assert torch.allclose(out[i], expected, atol=3e-5)


def _reference_crop(img: torch.Tensor, box: torch.Tensor, flip: bool, out: tuple[int, int]) -> torch.Tensor:
    """Bilinear sampling at output pixel centres, written out: pixel j of the output reads input coordinate
    (box start + (j + 0.5) / out * box size) * size - 0.5, clamped to the image (mirrored j when flipped)."""
    _, h, w = img.shape
    cy, cx, bh, bw = box.tolist()
    result = torch.empty(img.shape[0], *out)
    for i in range(out[0]):
        y = min(max((cy - bh / 2 + (i + 0.5) / out[0] * bh) * h - 0.5, 0.0), h - 1)
        for j in range(out[1]):
            jj = out[1] - 1 - j if flip else j
            x = min(max((cx - bw / 2 + (jj + 0.5) / out[1] * bw) * w - 0.5, 0.0), w - 1)
            y0, x0 = math.floor(y), math.floor(x)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = y - y0, x - x0
            result[:, i, j] = (
                img[:, y0, x0] * (1 - fy) * (1 - fx) + img[:, y0, x1] * (1 - fy) * fx
                + img[:, y1, x0] * fy * (1 - fx) + img[:, y1, x1] * fy * fx
            )  # fmt: skip
    return result


def test_resized_crop_matches_definition() -> None:
    boxes = torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.3, 0.6, 0.4, 0.7], [0.8, 0.2, 0.3, 0.3], [0.55, 0.45, 0.9, 0.5]])
    flips = torch.tensor([0.0, 1.0, 0.0, 1.0])
    out = ops.resized_crop(IMAGES[:4], boxes, flips, (7, 9))
    for i in range(4):
        assert torch.allclose(out[i], _reference_crop(IMAGES[i], boxes[i], bool(flips[i]), (7, 9)), atol=1e-5)


def test_whole_image_crop_is_identity_and_flip_mirrors() -> None:
    whole = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(6, 4)
    assert torch.allclose(ops.resized_crop(IMAGES, whole, torch.zeros(6), (10, 10)), IMAGES, atol=1e-6)
    boxes = torch.rand(6, 4) * 0.4 + torch.tensor([0.3, 0.3, 0.2, 0.2])
    plain = ops.resized_crop(IMAGES, boxes, torch.zeros(6), (8, 8))
    mirrored = ops.resized_crop(IMAGES, boxes, torch.ones(6), (8, 8))
    assert torch.allclose(mirrored, torch.flip(plain, dims=(-1,)), atol=1e-6)


def test_blur_rejects_bad_kernels() -> None:
    with pytest.raises(ValueError, match="odd"):
        ops.gaussian_blur(IMAGES, torch.ones(6), 4)
    with pytest.raises(ValueError, match="too large"):
        ops.gaussian_blur(IMAGES, torch.ones(6), 21)
