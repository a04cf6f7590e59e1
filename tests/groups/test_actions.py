"""The action on images and token grids, dtypes, devices, gradients, channels-last, scale resampling and
bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from equireg.groups import Elements, create_group

from .strategies import elements


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C·p·p, H/p, W/p): each token holds its patch's pixels."""
    b, c, h, w = x.shape
    return x.view(b, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4).reshape(b, c * p * p, h // p, w // p)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), p=st.sampled_from([1, 2, 4]), tokens=st.integers(1, 5))
def test_image_and_token_grid_actions_agree(data: st.DataObject, p: int, tokens: int) -> None:
    """Cut into p×p patches then move the patch grid (and each patch's content) == move the image then cut."""
    G = create_group("p4m")
    g = data.draw(elements(G, 3))
    x = torch.randn(3, 2, tokens * p, tokens * p)
    moved_then_cut = patchify(G.act(x, g), p)
    # move the grid of tokens, and rotate/flip each patch's content the same way
    tok = patchify(x, p)  # (B, C·p·p, n, n)
    grid_moved = G.act(tok, g)
    b, _, n, _ = grid_moved.shape
    patches = grid_moved.view(b, 2, p, p, n, n).permute(0, 4, 5, 1, 2, 3).reshape(b * n * n, 2, p, p)
    g_rep = Elements(G, g.tensor.repeat_interleave(n * n))
    patches = G.act(patches, g_rep).view(b, n, n, 2, p, p).permute(0, 3, 4, 5, 1, 2)
    cut_then_moved = patches.reshape(b, 2 * p * p, n, n)
    assert torch.equal(moved_then_cut, cut_then_moved)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["p4m", "c8", "scale"])
def test_dtypes_and_gradients(dtype: torch.dtype, name: str) -> None:
    G = create_group(name)
    x = torch.randn(4, 3, 8, 8, dtype=dtype, requires_grad=True)
    y = G.act(x, G.sample(4, generator=torch.Generator().manual_seed(1)))
    assert y.dtype == dtype and y.shape == x.shape
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all() and x.grad.abs().sum() > 0


def test_channels_last_path_is_identical() -> None:
    G = create_group("p4m")
    g = G.sample(5, generator=torch.Generator().manual_seed(3))
    x = torch.randn(5, 7, 6, 6)
    assert torch.equal(G.act(x.contiguous(memory_format=torch.channels_last), g), G.act(x, g))


def test_non_square_grids() -> None:
    G = create_group("p4m")
    x = torch.randn(2, 1, 4, 6)
    assert G.act(x, G.make(rot=2, flip=1)).shape == (2, 1, 4, 6)  # 180° and mirrors keep the grid
    assert G.act(x, G.make(rot=1)).shape == (2, 1, 6, 4)  # a uniform quarter turn transposes it
    with pytest.raises(ValueError, match="square grid"):
        G.act(x, G.make(rot=torch.tensor([0, 1])))


def test_scale_out_size_is_a_resize() -> None:
    G = create_group("scale")
    x = torch.randn(2, 3, 10, 10)
    s = G.make(scale=torch.tensor([1.4, 1.4]))
    got = G.act(x, s, out_size=(14, 14))
    want = F.interpolate(x, size=(14, 14), mode="bicubic", align_corners=False)
    assert torch.allclose(got, want, atol=1e-5)
    # p4m*scale: exact D4 part, then the resize, per sample
    P = create_group("p4m*scale")
    g = P.make(rot=torch.tensor([1, 3]), flip=torch.tensor([0, 1]), scale=1.4)
    d4 = create_group("p4m").make(rot=torch.tensor([1, 3]), flip=torch.tensor([0, 1]))
    want = F.interpolate(create_group("p4m").act(x, d4), size=(14, 14), mode="bicubic", align_corners=False)
    assert torch.allclose(P.act(x, g, out_size=(14, 14)), want, atol=1e-5)


def test_bad_input_messages() -> None:
    G = create_group("p4m")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        G.act(torch.randn(3, 8, 8), G.identity)
    with pytest.raises(ValueError, match="batch of 2 elements"):
        G.act(torch.randn(2, 1, 4, 4), G.sample(3))
    with pytest.raises(ValueError, match="elements of group 'p4m'.*'scale'"):
        G.act(torch.randn(1, 1, 4, 4), create_group("scale").identity)
    with pytest.raises(ValueError, match="integer codes 0..7"):
        G.act(torch.randn(1, 1, 4, 4), torch.tensor([8]))
    with pytest.raises(ValueError, match="integer codes"):
        G.compose(torch.tensor([0.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="positive scale"):
        create_group("scale").wrap(torch.tensor([[-1.0]]))
    with pytest.raises(ValueError, match="floating-point"):
        G.act(torch.zeros(1, 1, 4, 4, dtype=torch.long), G.identity)
    with pytest.raises(ValueError, match="regular fibres"):
        G.act(torch.randn(1, 5, 4, 4), G.identity, fibre="regular")
    with pytest.raises(ValueError, match="needs a scale factor"):
        G.act(torch.randn(1, 1, 4, 4), G.identity, out_size=(6, 6))


def test_unknown_group_lists_names() -> None:
    with pytest.raises(ValueError, match=r"unknown group 'p6'.*p4m.*scale"):
        create_group("p6")
    with pytest.raises(ValueError, match="no factor"):
        create_group("p4m*scale", bogus=1)


def test_product_kwargs_reach_their_factor() -> None:
    G = create_group("p4m*scale", min_scale=0.5, max_scale=2.0)
    s = G.sample(200, generator=torch.Generator().manual_seed(0))
    scales = G.split(s.tensor)[1]
    assert scales.min() >= 0.5 and scales.max() <= 2.0 and scales.max() > 1.5


def test_elements_vocabulary() -> None:
    G = create_group("c4")
    r = G.generators()["rot90"]
    assert (r @ r @ r @ r) == G.identity
    assert ~r == r @ r @ r
    assert repr(G.make(rot=torch.tensor([0, 1]))) == "c4[e, r90]"
    assert len(G.sample(7)) == 7 and G.order == 4
    with pytest.raises(TypeError):
        create_group("scale").elements()
