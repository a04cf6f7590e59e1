"""T_eq view policies: SER's official views (relative element always a D4 reflection plus an anisotropic rescale,
the image op as the official code writes it), the uniform extension (exact D4, token-aligned isotropic scale), the
registry and default choice, and the b1/b2 split."""

from __future__ import annotations

import math

import pytest
import torch

import torch.nn.functional as F

from equireg.augment import (
    CropConfig,
    SERPairPolicy,
    UniformPairPolicy,
    create_view_policy,
    default_view_policy,
    list_view_policies,
    split_batch,
)
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
    policy = UniformPairPolicy(G, photometric=False)
    x = torch.rand(32, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    out = policy(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.view2, G.act(out.view1, out.g))
    assert bool((out.g @ out.g1).equals(out.g2).all())
    assert out.view2.shape[-2:] == (12, 12) and out.group is G
    assert torch.equal(out.params1.crop, out.params2.crop) and torch.equal(out.params1.flip, out.params2.flip)
    if name == "p4m":
        assert out.g1.tensor.unique().numel() > 4  # elements are drawn per sample


def test_photometrics_are_independent_but_the_geometry_is_shared() -> None:
    G = create_group("p4m")
    policy = UniformPairPolicy(G, crop=CropConfig(scale=(0.3, 1.0)))
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
    policy = UniformPairPolicy(create_group("p4m"), shared_crop=False, photometric=False)
    out = policy(torch.rand(8, 3, 8, 8), generator=torch.Generator().manual_seed(4))
    assert not torch.equal(out.params1.crop, out.params2.crop)


def _scale_part(G: Group, elements: torch.Tensor) -> torch.Tensor:
    return G.split(elements)[1] if isinstance(G, ContinuousProduct) else elements


@pytest.mark.parametrize("name", ["p4m*scale", "scale"])
def test_scale_views_are_token_aligned(name: str) -> None:
    G = create_group(name)
    stride, side = 4, 32
    n0 = side // stride
    policy = UniformPairPolicy(G, token_stride=stride, photometric=False, crop=CropConfig(scale=(0.5, 1.0)))
    x = _smooth_images(16, side)
    seen_sizes = set()
    for seed in range(6):
        out = policy(x, generator=torch.Generator().manual_seed(seed))
        n1, n2 = out.view1.shape[-1] // stride, out.view2.shape[-1] // stride
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
    out = UniformPairPolicy(G, token_stride=4, photometric=False)(
        _smooth_images(32, 16), generator=torch.Generator().manual_seed(9)
    )
    d4_codes = G.split(out.g1.tensor)[0]
    assert d4_codes.unique().numel() > 4  # the D4 part is per sample, the scale per batch


def test_bad_token_stride() -> None:
    with pytest.raises(ValueError, match="use data.image_size=30 or 35"):
        UniformPairPolicy(create_group("p4m"), token_stride=5, output_size=32)
    with pytest.raises(ValueError, match="multiple of token_stride"):
        UniformPairPolicy(create_group("p4m"), token_stride=5)(torch.rand(2, 3, 12, 12))


@pytest.mark.parametrize(
    ("batch", "ratio", "expected"),
    [
        (256, 0.01, (253, 3)),  # SER's share: round(2.56) = 3
        (256, 0.25, (192, 64)),
        (20, 0.01, (19, 1)),  # at least one equivariant image
        (256, 0.0, (256, 0)),  # disabled
        (10, 0.25, (8, 2)),  # Python's round, as the official code: round(2.5) = 2
        (14, 0.25, (10, 4)),  # round(3.5) = 4
    ],
)
def test_split_batch(batch: int, ratio: float, expected: tuple[int, int]) -> None:
    assert split_batch(batch, ratio) == expected


def test_split_batch_errors() -> None:
    with pytest.raises(ValueError, match="ratio"):
        split_batch(8, 1.5)
    with pytest.raises(ValueError, match="batch_size"):
        split_batch(0, 0.1)
    with pytest.raises(ValueError, match="fewer than the batch"):
        split_batch(2, 0.9)


def test_rank_sharded_pairs_equal_one_global_batch() -> None:
    G = create_group("p4m*scale")
    policy = UniformPairPolicy(G, token_stride=4)
    x = _smooth_images(8, 16)
    whole = policy(x, generator=torch.Generator().manual_seed(5))
    parts = [policy(x[4 * r : 4 * r + 4], torch.Generator().manual_seed(5), rank=r, world_size=2) for r in range(2)]
    assert all(p.view2.shape == parts[0].view2.shape for p in parts)
    assert torch.equal(torch.cat([p.view2 for p in parts]), whole.view2)
    assert torch.equal(torch.cat([p.g.tensor for p in parts]), whole.g.tensor)


# --- SER's official views -------------------------------------------------------------------------------------

REFLECTIONS = {4, 5, 6, 7}  # D4 codes k + 4j with j = 1: the four mirrors


def test_ser_relative_element_is_always_a_reflection_with_an_anisotropic_rescale() -> None:
    """methods.md §7.1: exactly one view has R180 and one has hflip, so g = g_b g_a^-1 is a mirror, never the
    identity or a rotation; which mirror is shared by the batch (k is drawn per view, not per sample)."""
    policy = SERPairPolicy(create_group("p4m"), token_stride=4, photometric=False)
    codes, aspect_seen = set(), False
    for seed in range(40):
        out = policy(torch.rand(6, 3, 32, 32), generator=torch.Generator().manual_seed(seed))
        code, sy, sx = out.group.split(out.g.tensor)
        assert set(code.tolist()) <= REFLECTIONS and code.unique().numel() == 1
        codes |= set(code.tolist())
        assert bool((out.g @ out.g1).equals(out.g2).all())
        assert out.view1.shape[-2:] == (round(float(out.g1.tensor[0, 1]) * 8) * 4, round(float(out.g1.tensor[0, 2]) * 8) * 4)
        aspect_seen |= out.view1.shape[-2] != out.view1.shape[-1]
    assert codes == REFLECTIONS and aspect_seen


def _official_view(crop: torch.Tensor, r180: bool, hflip: bool, rows: int, cols: int, k: int, stride: int) -> torch.Tensor:
    """SER's ``aug_equiv`` for one sample, written out: R180, hflip, bicubic resize to stride x grid, rot90 by k."""
    x = crop[None]
    x = torch.rot90(x, 2, dims=(-2, -1)) if r180 else x
    x = torch.flip(x, dims=(-1,)) if hflip else x
    x = F.interpolate(x, size=(rows * stride, cols * stride), mode="bicubic", align_corners=False)
    return torch.rot90(x, k, dims=(-2, -1))[0]


def test_ser_views_follow_the_official_image_op_and_the_negated_second_view() -> None:
    stride, n = 4, 8
    policy = SERPairPolicy(create_group("p4m*scale"), token_stride=stride, photometric=False)
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(11)
    out = policy(x, generator=gen)
    crop = policy.views[0].apply_geometry(x, out.params1)
    # replay the draws in the policy's order: photometric/crop params were drawn first, then the two grids, then
    # the per-sample bits for view 1 (view 2 takes their negation)
    replay = torch.Generator().manual_seed(11)
    for aug in policy.views:
        aug.sample(n, (32, 32), replay)
    grids = [policy.grid(8, replay), policy.grid(8, replay)]
    r180 = torch.rand(n, generator=replay) > 0.5
    hflip = torch.rand(n, generator=replay) > 0.5
    for i in range(n):
        want1 = _official_view(crop[i], bool(r180[i]), bool(hflip[i]), *grids[0], stride)
        want2 = _official_view(crop[i], not r180[i], not hflip[i], *grids[1], stride)
        torch.testing.assert_close(out.view1[i], want1, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.view2[i], want2, atol=1e-5, rtol=1e-5)


def test_ser_feature_action_moves_view_a_onto_view_b() -> None:
    """rho_g of view 1 lands on view 2's grid and matches it up to two bicubic resamplings (smooth images)."""
    policy = SERPairPolicy(create_group("p4m"), token_stride=4, photometric=False)
    x = _smooth_images(8, 32)
    for seed in range(5):
        out = policy(x, generator=torch.Generator().manual_seed(seed))
        moved = out.group.act(out.view1, out.g, out_size=out.view2.shape[-2:])
        err = (moved - out.view2).abs()
        assert moved.shape == out.view2.shape and err.mean() < 0.01 and err.max() < 0.1, err.max().item()


def test_ser_grid_sizes_follow_the_area_and_aspect_ranges() -> None:
    """A = n0^2 * U(0.7, 1.3), r = log-U(3/4, 4/3): at 224 px / 16 (n0 = 14) sides lie in 10..18."""
    policy = SERPairPolicy(create_group("p4m"), token_stride=16)
    gen = torch.Generator().manual_seed(0)
    grids = [policy.grid(14, gen) for _ in range(2000)]
    sides = {s for g in grids for s in g[:2]}
    assert min(sides) >= 10 and max(sides) <= 18 and {g[2] for g in grids} == {0, 1, 2, 3}
    areas = torch.tensor([g[0] * g[1] / 196 for g in grids])
    assert 0.64 <= float(areas.min()) and float(areas.max()) <= 1.4 and abs(float(areas.mean()) - 1.0) < 0.02


def test_ser_policy_ranks_draw_their_rows_of_one_global_batch() -> None:
    policy = SERPairPolicy(create_group("p4m"), token_stride=4)
    x = _smooth_images(8, 16)
    whole = policy(x, generator=torch.Generator().manual_seed(5))
    parts = [policy(x[4 * r: 4 * r + 4], torch.Generator().manual_seed(5), rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([p.view2 for p in parts]), whole.view2)
    assert torch.equal(torch.cat([p.g.tensor for p in parts]), whole.g.tensor)


def test_registry_default_and_bad_combinations() -> None:
    assert {"ser", "uniform"} <= set(list_view_policies())
    assert default_view_policy(create_group("p4m")) == "ser"
    assert default_view_policy(create_group("p4m*scale")) == "ser"
    for name in ("c4", "flip", "p4m*so2", "scale"):
        assert default_view_policy(create_group(name)) == "uniform"
    with pytest.raises(ValueError, match="SER's group p4m or p4m\\*scale, got equiv.group='c4'"):
        create_view_policy("ser", {"group": create_group("c4")})
    policy = create_view_policy("uniform", {"group": create_group("c4"), "token_stride": 2, "unused": 1})
    assert isinstance(policy, UniformPairPolicy) and policy.token_stride == 2
