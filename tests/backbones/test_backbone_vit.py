"""ViT wrapper: split shapes, equality with timm in the standard layout, and SER's late [CLS] insertion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import equireg  # noqa: F401  (torchvision shim before timm)
import timm
from equireg.backbones import ViTBackbone, create_backbone

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)  # the vit_test preset


def _eval(name: str = "vit_test", **kwargs) -> ViTBackbone:
    backbone = create_backbone(name, **kwargs)
    assert isinstance(backbone, ViTBackbone)
    return backbone.eval()


def _token_counts(backbone: ViTBackbone, x: Tensor, fn: str = "forward_split") -> list[int]:
    """Sequence length each block receives (blocks that never run are absent)."""
    seen: list[int] = []
    handles = [
        blk.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1])) for blk in backbone.vit.blocks
    ]
    try:
        getattr(backbone, fn)(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _reference_after_equiv(backbone: ViTBackbone, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """SER's ViT written out from the method description: patch tokens + interpolated pos, blocks 1..k,
    norm_equiv map, [CLS] concatenated at 0, blocks k+1..depth, final LN, x[:, 0]."""
    vit, p = backbone.vit, backbone.patch_size
    h, w = x.shape[-2] // p, x.shape[-1] // p
    tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
    g_h, g_w = vit.patch_embed.grid_size
    pos = vit.pos_embed.reshape(1, g_h, g_w, -1).permute(0, 3, 1, 2)
    if (h, w) != (g_h, g_w):  # the official (DINO/SER) rule: a scale factor of (n + 0.1) / N per axis
        pos = F.interpolate(pos, scale_factor=((h + 0.1) / g_h, (w + 0.1) / g_w), mode="bicubic")
    tokens = tokens + pos.permute(0, 2, 3, 1).reshape(1, h * w, -1)
    for blk in vit.blocks[:k]:
        tokens = blk(tokens)
    fmap = backbone.norm_equiv(tokens).reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
    pooled = backbone.norm_pooled(tokens.mean(dim=1))
    tokens = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
    for blk in vit.blocks[k:]:
        tokens = blk(tokens)
    return vit.norm(tokens)[:, 0], fmap, pooled


@pytest.mark.parametrize("cls_position", ["after_equiv", "input"])
@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_split_shapes_match_layer_info_at_every_layer(cls_position: str, size: tuple[int, int]) -> None:
    backbone = _eval(cls_position=cls_position)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        for info in backbone.layer_info():
            out = backbone.forward_split(x, info.index)
            assert out.embedding.shape == (2, backbone.embed_dim)
            assert out.feature_map is not None and out.pooled is not None
            assert out.feature_map.shape == (2, info.channels, size[0] // info.stride, size[1] // info.stride)
            assert out.pooled.shape == (2, info.channels)
            torch.testing.assert_close(backbone.forward_map(x, info.index), out.feature_map)
            torch.testing.assert_close(backbone(x), out.embedding)
    assert [i.stride for i in backbone.layer_info()] == [4] * 4
    assert backbone.valid_layers() == [1, 2, 3, 4]


@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_input_layout_equals_timm_for_the_same_weights(size: tuple[int, int]) -> None:
    backbone = _eval(cls_position="input", split_layer=2, pos_resample="timm")
    reference = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True, **TINY
    )
    reference.load_state_dict(backbone.vit.state_dict())
    reference.eval()
    x = torch.randn(3, 3, *size)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
        (tapped,) = reference.forward_intermediates(x, indices=[1], output_fmt="NLC", intermediates_only=True,
                                                    return_prefix_tokens=True)
        out = backbone.forward_split(x)
        torch.testing.assert_close(backbone(x), expected)
        torch.testing.assert_close(out.embedding, expected)
        patches, prefix = tapped
        h, w = size[0] // 4, size[1] // 4
        expected_map = backbone.norm_equiv(patches).reshape(3, h, w, -1).permute(0, 3, 1, 2)
        torch.testing.assert_close(out.feature_map, expected_map)
        torch.testing.assert_close(out.pooled, backbone.norm_pooled(prefix[:, 0]))


def test_input_layout_pos_embed_has_a_cls_slot_and_every_block_sees_the_cls() -> None:
    backbone = _eval(cls_position="input")
    assert backbone.vit.pos_embed.shape == (1, 1 + 16, 32)
    assert backbone.cls_insert_after == 0
    assert _token_counts(backbone, torch.randn(1, 3, 16, 16)) == [17] * 4


@pytest.mark.parametrize("size", [(16, 16), (12, 16)])
def test_after_equiv_matches_the_written_out_reference(size: tuple[int, int]) -> None:
    backbone = _eval(split_layer=2, cls_position="after_equiv")
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        emb, fmap, pooled = _reference_after_equiv(backbone, x, 2)
        out = backbone.forward_split(x)
    torch.testing.assert_close(out.embedding, emb)
    torch.testing.assert_close(out.feature_map, fmap)
    torch.testing.assert_close(out.pooled, pooled)
    assert out.feature_map.shape[-2:] == (size[0] // 4, size[1] // 4)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_after_equiv_blocks_up_to_k_never_see_the_cls(k: int) -> None:
    backbone = _eval(split_layer=k, cls_position="after_equiv")
    x = torch.randn(2, 3, 12, 16)  # non-square: a 3x4 token grid
    n = 12
    assert backbone.vit.pos_embed.shape == (1, 16, 32)  # no slot for the [CLS]
    assert _token_counts(backbone, x) == [n] * k + [n + 1] * (4 - k)
    assert _token_counts(backbone, x, "forward") == [n] * k + [n + 1] * (4 - k)
    # What enters block k+1 at position 0 is exactly the learned [CLS] token.
    entering: list[Tensor] = []
    handle = backbone.vit.blocks[k].register_forward_pre_hook(lambda _m, args: entering.append(args[0]))
    with torch.no_grad():
        backbone(x)
    handle.remove()
    torch.testing.assert_close(entering[0][:, 0], backbone.vit.cls_token[:, 0].expand(2, -1))


def test_forward_map_stops_after_layer_k() -> None:
    backbone = _eval(split_layer=2, cls_position="after_equiv")
    assert _token_counts(backbone, torch.randn(1, 3, 16, 16), "forward_map") == [16, 16]


def test_tap_after_the_insertion_point_drops_the_cls_from_the_map() -> None:
    backbone = _eval(split_layer=2, cls_position="after_equiv")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = backbone.forward_split(x, layer=3)
    assert backbone.cls_insert_after == 2  # the architecture did not move
    assert out.feature_map.shape == (2, 32, 4, 4)
    with torch.no_grad():  # pooled at a layer where the [CLS] exists is that token
        cls = backbone.vit.cls_token.expand(2, -1, -1)
        tokens = backbone.vit.blocks[2](torch.cat([cls, _first_blocks(backbone, x, 2)], dim=1))
    torch.testing.assert_close(out.pooled, backbone.norm_pooled(tokens[:, 0]))


def _first_blocks(backbone: ViTBackbone, x: Tensor, k: int) -> Tensor:
    tokens = backbone.vit.patch_embed.proj(x).flatten(2).transpose(1, 2) + backbone.vit.pos_embed
    for blk in backbone.vit.blocks[:k]:
        tokens = blk(tokens)
    return tokens


def test_split_at_last_block_puts_the_cls_at_the_input_without_a_pos_slot() -> None:
    """Caveat 4: inserting after the last block would make the embedding a constant; the [CLS] enters at the
    input instead, still without a positional slot."""
    backbone = _eval(split_layer=4, cls_position="after_equiv")
    assert backbone.cls_insert_after == 0 and backbone.vit.pos_embed.shape == (1, 16, 32)
    x = torch.randn(2, 3, 16, 16)
    assert _token_counts(backbone, x) == [17] * 4
    with torch.no_grad():
        out = backbone.forward_split(x)
        tokens = torch.cat([backbone.vit.cls_token.expand(2, -1, -1), _first_blocks(backbone, x, 0)], 1)
        for blk in backbone.vit.blocks:
            tokens = blk(tokens)
    torch.testing.assert_close(out.embedding, backbone.vit.norm(tokens)[:, 0])
    expected_map = backbone.norm_equiv(tokens[:, 1:]).reshape(2, 4, 4, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.feature_map, expected_map)
    assert (out.embedding[0] - out.embedding[1]).abs().max() > 1e-3  # depends on the image


def test_gradient_reaches_blocks_up_to_k_from_the_map_and_nothing_after() -> None:
    backbone = create_backbone("vit_test", split_layer=2, cls_position="after_equiv")
    backbone.forward_map(torch.randn(2, 3, 12, 16)).square().mean().backward()
    for blk in backbone.vit.blocks[:2]:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in blk.parameters())
    assert backbone.vit.patch_embed.proj.weight.grad.abs().sum() > 0
    assert backbone.vit.pos_embed.grad.abs().sum() > 0
    assert all(p.grad is None for blk in backbone.vit.blocks[2:] for p in blk.parameters())
    assert backbone.vit.cls_token.grad is None


def test_gradient_from_the_embedding_reaches_the_cls_and_all_blocks() -> None:
    backbone = create_backbone("vit_test", split_layer=2, cls_position="after_equiv")
    backbone(torch.randn(2, 3, 16, 16)).square().sum().backward()
    assert backbone.vit.cls_token.grad.abs().sum() > 0
    assert all(blk.attn.qkv.weight.grad.abs().sum() > 0 for blk in backbone.vit.blocks)


def test_optional_outputs_can_be_skipped() -> None:
    out = _eval().forward_split(torch.randn(1, 3, 16, 16), with_map=False, with_pooled=False)
    assert out.feature_map is None and out.pooled is None and out.embedding.shape == (1, 32)


def test_freeze_patch_embed_and_drop_path() -> None:
    backbone = create_backbone("vit_test", freeze_patch_embed=True, drop_path_rate=0.2)
    assert not any(p.requires_grad for p in backbone.vit.patch_embed.parameters())
    backbone(torch.randn(2, 3, 16, 16)).sum().backward()
    assert backbone.vit.patch_embed.proj.weight.grad is None
    assert backbone.vit.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)


def test_bad_inputs_raise_clear_errors() -> None:
    backbone = _eval()
    with pytest.raises(ValueError, match="not a multiple of the patch size 4"):
        backbone(torch.randn(1, 3, 18, 16))
    with pytest.raises(ValueError, match="valid layers: 1, 2, 3, 4"):
        backbone.forward_split(torch.randn(1, 3, 16, 16), layer=5)
    with pytest.raises(ValueError, match="valid layers: 1, 2, 3, 4"):
        create_backbone("vit_test", split_layer=0)
    with pytest.raises(ValueError, match="cls_position"):
        create_backbone("vit_test", cls_position="middle")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backbone(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="class_token"):
        create_backbone("vit_test", class_token=False)


def test_in_chans_and_timm_overrides_pass_through() -> None:
    backbone = create_backbone("vit_test", in_chans=1, depth=2, embed_dim=48, num_heads=3)
    assert (backbone.num_layers, backbone.embed_dim, backbone.split_layer) == (2, 48, 2)
    assert backbone.forward_map(torch.randn(1, 1, 8, 8)).shape == (1, 48, 2, 2)


def test_default_is_the_standard_vit_with_a_cls_position_slot() -> None:
    """The baselines' architecture: the [CLS] at the input with its own positional slot (methods.md §7.2)."""
    backbone = create_backbone("vit_test")
    assert backbone.cls_position == "input" and backbone.vit.pos_embed.shape == (1, 17, 32)


def _bicubic_weights(out_n: int, in_n: int, scale: float) -> Tensor:
    """(out_n, in_n) matrix of PyTorch's bicubic rule (Keys kernel, a = -0.75, half-pixel centres, edge clamp),
    written out from its definition: source coordinate s = (i + 0.5) / scale - 0.5."""
    a = -0.75

    def kernel(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    weights = torch.zeros(out_n, in_n, dtype=torch.float64)
    for i in range(out_n):
        source = (i + 0.5) / scale - 0.5
        base = int(torch.floor(torch.tensor(source)))
        for tap in range(base - 1, base + 3):
            weights[i, min(max(tap, 0), in_n - 1)] += kernel(source - tap)
    return weights


def test_official_pos_resampling_equals_an_independent_formula_on_a_non_square_grid() -> None:
    """SER/DINO resample the learned table with scale_factor (n + 0.1)/N per axis and no antialias (§7.2)."""
    from equireg.backbones.vit import resample_pos_official

    native, grid = (4, 4), (3, 6)
    table = torch.randn(1, 16, 5, dtype=torch.float64)
    got = resample_pos_official(table, native, grid).reshape(3, 6, 5)
    rows = _bicubic_weights(3, 4, (3 + 0.1) / 4)
    cols = _bicubic_weights(6, 4, (6 + 0.1) / 4)
    expected = torch.einsum("ri,cj,ijd->rcd", rows, cols, table.reshape(4, 4, 5))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    timm_way = _eval(pos_resample="timm")._positions(table.float(), grid, prefix=0).reshape(3, 6, 5)
    assert (timm_way.double() - expected).abs().max() > 1e-3  # the two rules really differ on this grid


def test_backbone_uses_the_official_rule_for_non_native_grids() -> None:
    from equireg.backbones.vit import resample_pos_official

    backbone = _eval(cls_position="after_equiv", split_layer=1)
    x = torch.randn(1, 3, 12, 24)
    expected = resample_pos_official(backbone.vit.pos_embed, (4, 4), (3, 6))
    tokens = backbone.vit.patch_embed(x).reshape(1, 18, -1) + expected
    with torch.no_grad():
        reference = backbone.norm_equiv(backbone.vit.blocks[0](tokens)).reshape(1, 3, 6, -1).permute(0, 3, 1, 2)
        torch.testing.assert_close(backbone.forward_map(x), reference)


def test_moco_init_and_official_settings() -> None:
    """MoCo-v3: xavier-uniform linears, qkv split in three for the bound, zero biases, [CLS] std 1e-6, frozen
    random patch projection, no drop-path; explicit arguments win over the objective's settings."""
    backbone = create_backbone("vit_test", vit_settings={"init": "moco", "freeze_patch_embed": True,
                                                          "drop_path_rate": 0.0})
    qkv = backbone.vit.blocks[0].attn.qkv.weight  # (3 * 32, 32)
    bound = (6.0 / (32 + 32)) ** 0.5
    assert qkv.abs().max() <= bound and qkv.abs().max() > 0.9 * bound
    fc1 = backbone.vit.blocks[0].mlp.fc1.weight  # (128, 32): xavier bound sqrt(6 / (32 + 128))
    assert fc1.abs().max() <= (6.0 / 160) ** 0.5
    assert backbone.vit.blocks[0].mlp.fc1.bias.abs().max() == 0
    assert backbone.vit.cls_token.std() < 1e-5
    assert not backbone.vit.patch_embed.proj.weight.requires_grad
    dino = create_backbone("vit_test", vit_settings={"init": "ser", "drop_path_rate": 0.1}, drop_path_rate=0.3)
    assert dino.drop_path_rate == pytest.approx(0.3) and dino.vit.cls_token.std() > 1e-3
    with pytest.raises(ValueError, match="vit_settings keys"):
        create_backbone("vit_test", vit_settings={"lr": 1})


def test_final_map_is_the_last_block_through_the_final_norm() -> None:
    backbone = _eval(cls_position="input")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tokens = backbone.vit.norm(_all_tokens(backbone, x))
        expected = tokens[:, 1:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)
        torch.testing.assert_close(backbone.forward_final_map(x), expected)


def _all_tokens(backbone: ViTBackbone, x: Tensor) -> Tensor:
    tokens = backbone._embed(x)
    for blk in backbone.vit.blocks:
        tokens = blk(tokens)
    return tokens
