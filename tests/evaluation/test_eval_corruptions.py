"""Corruptions (identity at severity 0, ranges, determinism, monotone strength) and the robustness table."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.evaluation import (
    DEFAULT_CORRUPTIONS,
    apply_corruption,
    get_corruption,
    linear_probe,
    list_corruptions,
    register_corruption,
    render_table,
    robustness,
)
from equireg.evaluation.corruptions import CORRUPTIONS, blur_sigma, pixelate_block
from equireg.registry import UnknownNameError


def natural_like(n: int, size: int, seed: int = 0) -> Tensor:
    """Smooth random images in [0, 1] whose structure is not aligned with any pixel block."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=gen)
    x = get_corruption("gaussian_blur")(x, 3, gen)
    return ((x - x.mean()) / x.std() * 0.2 + 0.5).clamp(0, 1)


def test_builtins_are_registered() -> None:
    assert set(DEFAULT_CORRUPTIONS) <= set(list_corruptions())
    with pytest.raises(UnknownNameError, match="gaussian_noise"):
        get_corruption("frost")


@pytest.mark.parametrize("name", DEFAULT_CORRUPTIONS)
def test_severity_zero_is_identity_and_outputs_stay_in_range(name: str) -> None:
    x = natural_like(3, 16)
    assert torch.equal(apply_corruption(name, x, 0), x)
    for severity in range(1, 6):
        y = apply_corruption(name, x, severity, seed=5)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert not torch.equal(y, x)
        torch.testing.assert_close(apply_corruption(name, x, severity, seed=5), y)  # seeded


@pytest.mark.parametrize("name", DEFAULT_CORRUPTIONS)
def test_distortion_grows_with_severity(name: str) -> None:
    x = natural_like(8, 32)
    mse = [float((apply_corruption(name, x, s) - x).pow(2).mean()) for s in range(6)]
    assert mse[0] == 0.0
    assert all(b > a for a, b in zip(mse, mse[1:])), mse


def test_bad_severity_is_a_clear_error() -> None:
    x = torch.rand(1, 3, 8, 8)
    for bad in (6, -1, 1.5):
        with pytest.raises(ValueError, match="severity"):
            apply_corruption("contrast", x, bad)  # type: ignore[arg-type]


def test_noise_depends_on_the_seed_and_matches_its_definition() -> None:
    x = torch.full((2, 3, 8, 8), 0.5)
    a, b = apply_corruption("gaussian_noise", x, 1, seed=0), apply_corruption("gaussian_noise", x, 1, seed=1)
    assert not torch.equal(a, b)
    assert float((a - x).std()) == pytest.approx(0.08, rel=0.15)


def test_individual_definitions() -> None:
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    # contrast: each image shrinks towards its own mean by 0.4 at severity 1
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(apply_corruption("contrast", x, 1), (x - mean) * 0.4 + mean)
    # pixelate: 2x2 cells hold their mean
    y = apply_corruption("pixelate", x, 1)
    assert pixelate_block(1, 12) == 2
    torch.testing.assert_close(y[:, :, :2, :2], x[:, :, :2, :2].mean(dim=(2, 3), keepdim=True).expand(-1, -1, 2, 2))
    # blur preserves a constant image and its sigma scales with sqrt(side / 224)
    flat = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(apply_corruption("gaussian_blur", flat, 5), flat)
    assert blur_sigma(1, 224) == 1.0 and blur_sigma(5, 56) == pytest.approx(3.0)
    # rotate: reflection padding keeps a constant image constant (no black corners)
    assert math.isclose(float(apply_corruption("rotate", flat, 5).mean()), 0.3, rel_tol=1e-5)


def test_register_a_custom_corruption() -> None:
    @register_corruption("test_invert")
    def invert(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        return images if severity == 0 else 1.0 - images

    try:
        x = torch.rand(2, 3, 8, 8)
        torch.testing.assert_close(apply_corruption("test_invert", x, 3), 1 - x)
        assert "test_invert" in list_corruptions("test_*")
    finally:
        CORRUPTIONS._factories.pop("test_invert", None)


def pattern_task(n: int, seed: int, noise: float) -> tuple[Tensor, Tensor]:
    """Ten classes, each a fixed fine random pattern at 10% amplitude, plus per-image noise."""
    patterns = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(7)) - 0.5
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    images = 0.5 + 0.1 * patterns[labels] + noise * torch.randn(n, 3, 16, 16, generator=gen)
    return images.clamp(0, 1), labels


def test_robustness_degrades_monotonically_on_a_simple_classifier() -> None:
    backbone = nn.Flatten()  # pixels as features: a linear classifier on raw pixels
    xtr, ytr = pattern_task(500, 0, noise=0.2)
    xte, yte = pattern_task(300, 1, noise=0.1)
    probe = linear_probe(backbone(xtr), ytr, backbone(xte), yte)
    result = robustness(backbone, probe, (xte, yte), batch_size=128)
    assert result.clean_top1 == pytest.approx(probe.top1) and result.clean_top1 >= 95
    for name in DEFAULT_CORRUPTIONS:
        row = result.top1[name]
        assert all(b <= a + 5.0 for a, b in zip(row, row[1:])), (name, row)  # non-increasing up to noise
        assert row[-1] <= result.clean_top1 - 30, (name, row)  # the worst severity clearly hurts
    assert result.mean_corruption_accuracy == pytest.approx(
        sum(sum(r) for r in result.top1.values()) / (5 * len(DEFAULT_CORRUPTIONS))
    )
    assert result.mean_corruption_accuracy < result.clean_top1

    # a one-shot iterator of batches gives the same numbers (single pass, seeds per batch index)
    again = robustness(backbone, probe, iter([(xte[:128], yte[:128]), (xte[128:256], yte[128:256]), (xte[256:], yte[256:])]))
    assert again.top1 == result.top1
    payload = json.loads(result.to_json())
    assert payload["severities"] == [1, 2, 3, 4, 5] and set(payload["top1"]) == set(DEFAULT_CORRUPTIONS)

    from rich.console import Console

    console = Console(record=True, width=140)
    console.print(render_table(result))
    assert "mean corruption accuracy" in console.export_text()


def test_robustness_accepts_plain_callables_and_custom_corruptions() -> None:
    backbone = nn.Flatten()
    x = torch.rand(8, 3, 4, 4)
    labels = torch.zeros(8, dtype=torch.long)
    always_zero = lambda feats: F.one_hot(torch.zeros(feats.shape[0], dtype=torch.long), 2).float()  # noqa: E731
    result = robustness(backbone, always_zero, (x, labels), corruptions={"id": lambda im, s, g: im}, severities=[1])
    assert result.top1 == {"id": [100.0]} and result.clean_top1 == 100.0
    with pytest.raises(ValueError, match="labelled"):
        robustness(backbone, always_zero, x)
