"""T_eq: views related exactly by the relative element (D4), token-aligned scale views, and the b1/b2 split."""

from __future__ import annotations

import math

import pytest
import torch

from equireg.augment import EquivariantViewPolicy, split_batch
from equireg.groups import ContinuousProduct, Group, create_group


def _smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Band-limited images (a few low-frequency waves), where resampling errors are small and measurable."""
    gen = torch.Generator().manual_seed(seed)
    coords = torch.linspace(-1, 1, size)
    yy, xx = coords.view(1, 1, -1, 1), coords.view(1, 1, 1, -1)
    image = torch.zeros(n, 3, size, size)
    for _ in range(3):
        fy, fx, phase = (torch.rand(3, n, 3, 1, 1, generator=gen) - 0.5) * torch.tensor([3.0, 3.0, 6.0]).view(3, 1, 1, 1, 1)
        image += torch.sin(math.pi * (fy * yy + fx * xx) + phase) / 6
    return image + 0.5


@pytest.mark.parametrize("name", ["p4m", "c4", "flip", "trivial"])
def test_d4_second_view_is_exactly_the_relative_element_applied(name: str) -> None:
    G = create_group(name)
    policy = EquivariantViewPolicy(G, photometric=False)
    x = torch.rand(32, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    out = policy(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.view2, G.act(out.view1, out.g))
    assert bool((out.g @ out.g1).equals(out.g2).all())
    assert out.tokens == (12, 12)
    assert torch.equal(out.params1.crop, out.params2.crop) and torch.equal(out.params1.flip, out.params2.flip)
    if name == "p4m":
        assert out.g1.tensor.unique().numel() > 4  # elements are drawn per sample


def test_photometrics_are_independent_but_the_geometry_is_shared() -> None:
    G = create_group("p4m")
    policy = EquivariantViewPolicy(G, crop_min=0.3)
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    out = policy(x, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(out.params1.color, out.params2.color)
    assert bool((out.params1.blur_sigma > 0).all())  # view 1 is T's view 1 (blur p = 1)
    # undoing each view's element gives two photometric variants of one crop: same grayscale-free structure
    back1, back2 = G.act(out.view1, ~out.g1), G.act(out.view2, ~out.g2)
    crop = policy.views[0].apply_geometry(x, out.params1)
    assert torch.equal(back1, policy.views[0].apply_photometric(crop, out.params1))
    assert torch.equal(back2, policy.views[1].apply_photometric(crop, out.params2))


def test_separate_crops_when_not_shared() -> None:
    policy = EquivariantViewPolicy(create_group("p4m"), shared_crop=False, photometric=False)
    out = policy(torch.rand(8, 3, 8, 8), generator=torch.Generator().manual_seed(4))
    assert not torch.equal(out.params1.crop, out.params2.crop)


def _scale_part(G: Group, elements: torch.Tensor) -> torch.Tensor:
    return G.split(elements)[1] if isinstance(G, ContinuousProduct) else elements


@pytest.mark.parametrize("name", ["p4m*scale", "scale"])
def test_scale_views_are_token_aligned(name: str) -> None:
    G = create_group(name)
    stride, side = 4, 32
    n0 = side // stride
    policy = EquivariantViewPolicy(G, token_stride=stride, photometric=False, crop_min=0.5)
    x = _smooth_images(16, side)
    seen_sizes = set()
    for seed in range(6):
        out = policy(x, generator=torch.Generator().manual_seed(seed))
        n1, n2 = out.tokens
        seen_sizes |= {n1, n2}
        assert out.view1.shape[-2:] == (n1 * stride,) * 2 and out.view2.shape[-2:] == (n2 * stride,) * 2
        assert round(0.7 * n0) <= min(n1, n2) and max(n1, n2) <= round(1.3 * n0)
        # the recorded scales are exactly the token ratios, shared by the batch; the relative scale is n2 / n1
        s1, s2, s = (_scale_part(G, e.tensor) for e in (out.g1, out.g2, out.g))
        assert torch.equal(s1, torch.full_like(s1, n1 / n0)) and torch.equal(s2, torch.full_like(s2, n2 / n0))
        assert torch.allclose(s, torch.full_like(s, n2 / n1), rtol=1e-6)
        assert bool((out.g @ out.g1).equals(out.g2).all())
        # view 2 vs view 1 moved by g onto view 2's grid: equal up to resampling twice (bicubic). On these
        # smooth images the measured error is <= 0.003 on average and <= 0.017 at worst (of the [0, 1] range)
        moved = G.act(out.view1, out.g, out_size=out.view2.shape[-2:])
        err = (moved - out.view2).abs()
        assert err.mean() < 0.005 and err.max() < 0.03, (n1, n2, err.mean().item(), err.max().item())
    assert len(seen_sizes) > 1


def test_scale_views_with_d4_per_sample() -> None:
    G = create_group("p4m*scale")
    out = EquivariantViewPolicy(G, token_stride=4, photometric=False)(
        _smooth_images(32, 16), generator=torch.Generator().manual_seed(9)
    )
    d4_codes = G.split(out.g1.tensor)[0]
    assert d4_codes.unique().numel() > 4  # the D4 part is per sample, the scale per batch


def test_bad_token_stride() -> None:
    with pytest.raises(ValueError, match="multiple of token_stride"):
        EquivariantViewPolicy(create_group("p4m"), token_stride=5, output_size=32)
    with pytest.raises(ValueError, match="multiple of token_stride"):
        EquivariantViewPolicy(create_group("p4m"), token_stride=5)(torch.rand(2, 3, 12, 12))


@pytest.mark.parametrize(
    ("batch", "ratio", "min_b2", "expected"),
    [
        (256, 0.01, 1, (253, 3)),  # SER's share: round(2.56) = 3
        (256, 0.25, 1, (192, 64)),
        (20, 0.01, 1, (19, 1)),  # at least min_b2
        (20, 0.01, 0, (20, 0)),
        (256, 0.0, 1, (256, 0)),  # disabled
        (8, 1.0, 1, (0, 8)),
        (10, 0.25, 1, (7, 3)),  # 2.5 rounds up
    ],
)
def test_split_batch(batch: int, ratio: float, min_b2: int, expected: tuple[int, int]) -> None:
    assert split_batch(batch, ratio, min_b2=min_b2) == expected


def test_split_batch_errors() -> None:
    with pytest.raises(ValueError, match="ratio"):
        split_batch(8, 1.5)
    with pytest.raises(ValueError, match="batch_size"):
        split_batch(0, 0.1)


def test_rank_sharded_pairs_equal_one_global_batch() -> None:
    G = create_group("p4m*scale")
    policy = EquivariantViewPolicy(G, token_stride=4)
    x = _smooth_images(8, 16)
    whole = policy(x, generator=torch.Generator().manual_seed(5))
    parts = [policy(x[4 * r : 4 * r + 4], torch.Generator().manual_seed(5), rank=r, world_size=2) for r in range(2)]
    assert all(p.tokens == whole.tokens for p in parts)
    assert torch.equal(torch.cat([p.view2 for p in parts]), whole.view2)
    assert torch.equal(torch.cat([p.g.tensor for p in parts]), whole.g.tensor)
