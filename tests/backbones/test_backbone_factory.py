"""Registry, presets, the timm resolver and the base-class validation."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from equireg.backbones import (
    BACKBONES,
    Backbone,
    LayerInfo,
    SplitOutput,
    TimmCNNBackbone,
    ViTBackbone,
    create_backbone,
    list_backbones,
    register_backbone,
)
from equireg.registry import UnknownNameError

PRESETS = {
    # name: (family, embed_dim, depth / stages, heads, patch, img, default split)
    "vit_tiny_p4_32": ("vit", 192, 12, 3, 4, 32, 3),
    "vit_small_p4_32": ("vit", 384, 12, 6, 4, 32, 3),
    "vit_mini_p4_32": ("vit", 128, 6, 4, 4, 32, 3),
    "vit_tiny_patch16_224": ("vit", 192, 12, 3, 16, 224, 3),
    "vit_small_patch16_224": ("vit", 384, 12, 6, 16, 224, 3),
    "vit_base_patch16_224": ("vit", 768, 12, 12, 16, 224, 3),
    "vit_test": ("vit", 32, 4, 2, 4, 16, 3),
    "resnet18": ("cnn", 512, 4, None, None, None, 2),
    "resnet18_cifar": ("cnn", 512, 4, None, None, None, 2),
    "resnet50": ("cnn", 2048, 4, None, None, None, 2),
    "resnet_test": ("cnn", 64, 4, None, None, None, 2),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_have_the_documented_shapes(name: str) -> None:
    family, dim, layers, heads, patch, img, split = PRESETS[name]
    with torch.device("meta"):  # shapes only: no memory, no init cost
        backbone = create_backbone(name)
    shape = (backbone.family, backbone.embed_dim, backbone.num_layers, backbone.split_layer)
    assert shape == (family, dim, layers, split)
    assert backbone.in_chans == 3
    if family == "vit":
        assert isinstance(backbone, ViTBackbone)
        assert backbone.vit.blocks[0].attn.num_heads == heads
        assert backbone.patch_size == patch and backbone.img_size == (img, img)
        assert backbone.cls_position == "input"
    else:
        assert isinstance(backbone, TimmCNNBackbone)
        expected = [1, 2, 4, 8] if name.endswith("_cifar") else [4, 8, 16, 32]
        assert [i.stride for i in backbone.layer_info()] == expected


def test_list_backbones_filters_with_a_pattern() -> None:
    assert set(PRESETS) <= set(list_backbones())
    assert list_backbones("vit_*_p4_32") == ["vit_mini_p4_32", "vit_small_p4_32", "vit_tiny_p4_32"]


def test_unknown_name_lists_the_choices_and_mentions_timm() -> None:
    with pytest.raises(ValueError) as info:
        create_backbone("vit_huge_p2")
    assert isinstance(info.value, UnknownNameError)
    assert "vit_test" in str(info.value) and "resnet18_cifar" in str(info.value) and "timm:" in str(info.value)


def test_unknown_timm_model_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_backbone("timm:resnet181")


def test_timm_resolver_routes_vits_to_the_vit_wrapper() -> None:
    backbone = create_backbone("timm:vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=16, depth=2,
                               num_heads=2, split_layer=1, cls_position="after_equiv")
    assert isinstance(backbone, ViTBackbone) and backbone.cls_insert_after == 1
    assert backbone.forward_map(torch.randn(1, 3, 8, 12)).shape == (1, 16, 2, 3)
    assert "timm:vit_tiny_patch16_224" in BACKBONES
    assert not any(name.startswith("timm:") for name in list_backbones())


def test_none_kwargs_keep_preset_defaults() -> None:
    backbone = create_backbone("vit_test", split_layer=None, in_chans=None)
    assert backbone.split_layer == 3 and backbone.in_chans == 3


class _Flat(Backbone):
    """A minimal custom backbone: one 'layer' that is the image itself, pooled."""

    family = "cnn"

    def __init__(self, in_chans: int = 3, split_layer: int = 1) -> None:
        super().__init__()
        self.in_chans, self.embed_dim, self.num_layers = in_chans, in_chans, 1
        self.split_layer = self.check_layer(split_layer)

    def layer_info(self) -> list[LayerInfo]:
        return [LayerInfo(1, self.in_chans, 1)]

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))

    def forward_map(self, x: Tensor, layer: int | None = None) -> Tensor:
        self._layer(layer)
        return x

    def forward_split(self, x: Tensor, layer: int | None = None, *, with_map: bool = True,
                      with_pooled: bool = True) -> SplitOutput:
        return SplitOutput(self(x), self.forward_map(x, layer) if with_map else None, None)


def test_register_a_custom_backbone() -> None:
    register_backbone("test_flat_backbone")(_Flat)
    register_backbone("test_not_a_backbone")(lambda **_: torch.nn.Identity())
    try:
        backbone = create_backbone("test_flat_backbone", in_chans=2)
        assert backbone.forward_split(torch.ones(1, 2, 4, 4)).embedding.shape == (1, 2)
        assert backbone.info() == LayerInfo(1, 2, 1)
        with pytest.raises(TypeError, match="not an equireg Backbone"):
            create_backbone("test_not_a_backbone")
    finally:
        BACKBONES._factories.pop("test_flat_backbone")
        BACKBONES._factories.pop("test_not_a_backbone")


@pytest.mark.parametrize("bad", [0, 5, -1, 2.5, "3", True, None])
def test_check_layer_rejects_everything_but_valid_integers(bad: object) -> None:
    with torch.device("meta"):
        backbone = create_backbone("vit_test")
    with pytest.raises(ValueError, match="1..4|valid layers: 1, 2, 3, 4"):
        backbone.check_layer(bad)  # type: ignore[arg-type]


def test_check_layer_accepts_integer_like_values() -> None:
    with torch.device("meta"):
        backbone = create_backbone("vit_test")
    assert backbone.check_layer(torch.tensor(2)) == 2  # type: ignore[arg-type]
    assert backbone.info(4) == LayerInfo(4, 32, 4) and backbone.info().index == 3
