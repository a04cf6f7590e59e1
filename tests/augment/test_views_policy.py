"""SSLViewPolicy: determinism, recorded parameters that reproduce the views, parameter laws, targets."""

from __future__ import annotations

import math

import pytest
import torch

from equireg.augment import (
    VECTOR_FIELDS,
    CropConfig,
    PhotometricConfig,
    SSLViewPolicy,
    ViewAugmentation,
    ViewParams,
    augself_targets,
    ops,
    vector_stats,
)

import torchvision.transforms.v2.functional as TF  # noqa: E402  isort: skip  (after equireg's shim)


def _images(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_seeded_generator_is_deterministic() -> None:
    policy, x = SSLViewPolicy(), _images()
    a = policy(x, generator=torch.Generator().manual_seed(1))
    b = policy(x, generator=torch.Generator().manual_seed(1))
    c = policy(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.view1, b.view1) and torch.equal(a.view2, b.view2)
    assert torch.equal(a.params1.vector(), b.params1.vector()) and torch.equal(a.params2.vector(), b.params2.vector())
    assert not torch.equal(a.view1, c.view1)
    view1, view2, params1, params2 = a  # unpacks as the documented 4-tuple
    assert view1.shape == view2.shape == x.shape and len(params1) == len(params2) == 8


def test_recorded_params_reproduce_the_views() -> None:
    policy, x = SSLViewPolicy(output_size=12), _images()
    v1, v2, p1, p2 = policy(x, generator=torch.Generator().manual_seed(3))
    assert v1.shape == (8, 3, 12, 12)
    assert torch.equal(policy.views[0].apply(x, p1), v1)
    assert torch.equal(policy.views[1].apply(x, p2), v2)


def test_pipeline_matches_per_image_torchvision_reference() -> None:
    """Rebuild each view image by image: our crop, then torchvision's ops in the recorded order and amounts."""
    aug = ViewAugmentation(CropConfig(scale=(0.3, 1.0)), PhotometricConfig(solarize_p=0.5, blur_p=0.5), 16)
    x = _images(12)
    view, p = aug(x, generator=torch.Generator().manual_seed(4))
    refs = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    kernel = aug.photometric.kernel_size(16)
    for i in range(12):
        img = ops.resized_crop(x[i : i + 1], p.crop[i : i + 1], p.flip[i : i + 1], (16, 16))[0]
        if p.jitter_applied[i]:
            for op in p.jitter_order[i].tolist():
                img = refs[op](img, float(p.color[i, op]))
        if p.grayscale[i]:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if p.blur_sigma[i] > 0:
            img = TF.gaussian_blur(img, [kernel, kernel], [float(p.blur_sigma[i])] * 2)
        if p.solarize[i]:
            img = TF.solarize(img, 0.5)
        assert torch.allclose(view[i], img, atol=5e-5), (i, (view[i] - img).abs().max())


def test_parameter_laws() -> None:
    policy = SSLViewPolicy(crop_min=0.2)
    n = 4096
    gen = torch.Generator().manual_seed(5)
    p1 = policy.views[0].sample(n, (32, 32), gen)
    p2 = policy.views[1].sample(n, (32, 32), gen)
    for p in (p1, p2):
        cy, cx, h, w = p.crop.unbind(1)
        assert bool(((cy - h / 2) >= -1e-6).all() and ((cy + h / 2) <= 1 + 1e-6).all())
        assert bool(((cx - w / 2) >= -1e-6).all() and ((cx + w / 2) <= 1 + 1e-6).all())
        area, aspect = h * w, w / h
        assert bool(((area >= 0.2 - 1e-6) & (area <= 1 + 1e-6)).all())
        assert bool(((aspect >= 3 / 4 - 1e-5) & (aspect <= 4 / 3 + 1e-5)).all())
        on = p.jitter_applied.bool()
        lo = torch.tensor([0.6, 0.6, 0.8, -0.1])
        hi = torch.tensor([1.4, 1.4, 1.2, 0.1])
        assert bool(((p.color[on] >= lo) & (p.color[on] <= hi)).all())
        assert torch.equal(p.color[~on], torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(int((~on).sum()), 4))
        assert torch.equal(torch.sort(p.jitter_order, dim=1).values, torch.arange(4).expand(n, 4))
        assert abs(p.jitter_applied.mean().item() - 0.8) < 0.03
        assert abs(p.grayscale.mean().item() - 0.2) < 0.03
        assert abs(p.flip.mean().item() - 0.5) < 0.03
        sigma = p.blur_sigma[p.blur_sigma > 0]
        assert bool(((sigma >= 0.1) & (sigma <= 2.0)).all())
    assert bool((p1.blur_sigma > 0).all()) and not bool(p1.solarize.any())
    assert abs((p2.blur_sigma > 0).float().mean().item() - 0.1) < 0.02
    assert abs(p2.solarize.mean().item() - 0.2) < 0.03
    assert len({tuple(r) for r in p1.jitter_order[p1.jitter_applied.bool()].tolist()}) == 24  # all orders occur


def test_photometric_off_and_output_size() -> None:
    x = _images(4, size=24)
    policy = SSLViewPolicy(output_size=8, photometric=False)
    v1, _, p1, _ = policy(x, generator=torch.Generator().manual_seed(6))
    assert v1.shape == (4, 3, 8, 8)
    assert not bool(p1.jitter_applied.any() or p1.grayscale.any() or (p1.blur_sigma > 0).any() or p1.solarize.any())
    # larger inputs are first downsized with antialiasing, then cropped: geometry only
    small = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(v1, ops.resized_crop(small, p1.crop, p1.flip, (8, 8)), atol=1e-6)


def test_vector_columns_and_stats() -> None:
    aug = SSLViewPolicy().views[1]
    p = aug.sample(5, (32, 32), torch.Generator().manual_seed(7))
    vec = p.vector()
    assert vec.shape == (5, len(VECTOR_FIELDS)) == (5, 18)
    col = {name: vec[:, i] for i, name in enumerate(VECTOR_FIELDS)}
    assert torch.equal(col["crop_w"], p.crop[:, 3]) and torch.equal(col["flip"], p.flip)
    assert torch.equal(col["order_2"], p.jitter_order[:, 2].float()) and torch.equal(col["hue"], p.color[:, 3])
    assert torch.equal(col["blur_sigma"], p.blur_sigma) and torch.equal(col["solarize"], p.solarize)
    mean, std = vector_stats(aug, num_samples=8192)
    assert abs(mean[VECTOR_FIELDS.index("solarize")].item() - 0.2) < 0.02 and bool((std > 0).all())


def _params(crop: list[list[float]], flip: list[float], color: list[list[float]], sigma: list[float]) -> ViewParams:
    n = len(flip)
    return ViewParams(
        crop=torch.tensor(crop), flip=torch.tensor(flip), jitter_applied=torch.ones(n),
        color=torch.tensor(color), jitter_order=torch.arange(4).expand(n, 4), grayscale=torch.zeros(n),
        blur_sigma=torch.tensor(sigma), solarize=torch.tensor([1.0] * n),
    )  # fmt: skip


def test_augself_targets_by_hand() -> None:
    a = _params([[0.5, 0.3, 0.4, 0.6]], [1.0], [[1.2, 0.8, 1.0, 0.05]], [1.5])
    b = _params([[0.4, 0.2, 0.5, 0.5]], [0.0], [[1.0, 1.0, 0.9, -0.1]], [0.0])
    t = augself_targets(a, b)
    # a is flipped: its x-centre is read as 1 - 0.3 = 0.7; b keeps 0.2
    assert torch.allclose(t["crop"], torch.tensor([[0.1, 0.5, -0.1, 0.1]]), atol=1e-6)
    # (factor - 1) / (2 * strength), hue / (2 * strength), strengths (0.4, 0.4, 0.2, 0.1)
    assert torch.allclose(t["color"], torch.tensor([[0.2 / 0.8, -0.2 / 0.8, 0.1 / 0.4, 0.15 / 0.2]]), atol=1e-6)
    assert t["flip"].item() == 0.0 and math.isclose(t["blur"].item(), 1.5) and t["sol"].item() == 0.0
    quirk = augself_targets(a, b, mirror_with_first_flip=True)  # the official code mirrors b with a's flip
    assert torch.allclose(quirk["crop"][:, 1], torch.tensor([0.7 - 0.8]), atol=1e-6)


def test_bad_inputs() -> None:
    policy = SSLViewPolicy()
    with pytest.raises(ValueError, match="RGB"):
        policy(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="float"):
        policy((torch.rand(2, 3, 8, 8) * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="probability"):
        PhotometricConfig(jitter_p=1.5)
    with pytest.raises(ValueError, match="crop scale"):
        SSLViewPolicy(crop_min=1.5)
    with pytest.raises(ValueError, match="parameter rows"):
        policy.views[0].apply(torch.rand(3, 3, 8, 8), policy.views[0].sample(2, (8, 8)))


def test_rank_sharded_draws_equal_one_global_batch() -> None:
    policy, x = SSLViewPolicy(), _images(12)
    whole = policy(x, generator=torch.Generator().manual_seed(8))
    parts = [policy(x[4 * r : 4 * r + 4], torch.Generator().manual_seed(8), rank=r, world_size=3) for r in range(3)]
    assert torch.equal(torch.cat([p.view1 for p in parts]), whole.view1)
    assert torch.equal(torch.cat([p.params2.vector() for p in parts]), whole.params2.vector())
    with pytest.raises(ValueError, match="rank"):
        policy(x, rank=3, world_size=3)
