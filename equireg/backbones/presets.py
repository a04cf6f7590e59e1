"""Named backbones, so that small experiments need no architecture flags.

Every preset accepts the wrapper's keyword arguments and timm overrides (``depth=6``, ``embed_dim=96``, ...);
explicit kwargs win over the preset's values. Each preset carries its wrapper's signature, so the framework's
context (image size, split layer, [CLS] position, the objective's ViT settings) reaches exactly the parameters the
wrapper declares (see equireg/registry.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from equireg.backbones.cnn import TimmCNNBackbone
from equireg.backbones.factory import register_backbone
from equireg.backbones.vit import ViTBackbone


F = TypeVar("F", bound=Callable[..., Any])


def _signature_of(wrapper: type) -> Callable[[F], F]:
    """Give a ``**kwargs`` preset the keyword parameters of the wrapper class it builds."""

    def decorate(fn: F) -> F:
        sig = inspect.signature(wrapper)
        fn.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "model_name"])  # type: ignore[attr-defined]
        return fn

    return decorate


def _vit(model_name: str, preset: dict[str, Any], kwargs: dict[str, Any]) -> ViTBackbone:
    return ViTBackbone(model_name, **{**preset, **kwargs})


def _cnn(model_name: str, preset: dict[str, Any], kwargs: dict[str, Any]) -> TimmCNNBackbone:
    return TimmCNNBackbone(model_name, **{**preset, **kwargs})


# -- ViTs for 32 px images (patch 4: an 8x8 token grid) -------------------------------------------------------


@register_backbone("vit_tiny_p4_32")
@_signature_of(ViTBackbone)
def vit_tiny_p4_32(**kwargs: Any) -> ViTBackbone:
    """ViT-Tiny shape (192-d, 12 blocks, 3 heads) with 4 px patches for 32 px images."""
    return _vit("vit_tiny_patch16_224", dict(img_size=32, patch_size=4), kwargs)


@register_backbone("vit_small_p4_32")
@_signature_of(ViTBackbone)
def vit_small_p4_32(**kwargs: Any) -> ViTBackbone:
    """ViT-Small shape (384-d, 12 blocks, 6 heads) with 4 px patches for 32 px images."""
    return _vit("vit_small_patch16_224", dict(img_size=32, patch_size=4), kwargs)


@register_backbone("vit_mini_p4_32")
@_signature_of(ViTBackbone)
def vit_mini_p4_32(**kwargs: Any) -> ViTBackbone:
    """128-d, 6 blocks, 4 heads, 4 px patches: the CPU-friendly ViT for 32 px runs."""
    return _vit("vit_tiny_patch16_224", dict(img_size=32, patch_size=4, embed_dim=128, depth=6, num_heads=4), kwargs)


# -- ImageNet-shape ViTs (224 px, patch 16: a 14x14 grid) -----------------------------------------------------


@register_backbone("vit_tiny_patch16_224")
@_signature_of(ViTBackbone)
def vit_tiny_patch16_224(**kwargs: Any) -> ViTBackbone:
    return _vit("vit_tiny_patch16_224", {}, kwargs)


@register_backbone("vit_small_patch16_224")
@_signature_of(ViTBackbone)
def vit_small_patch16_224(**kwargs: Any) -> ViTBackbone:
    """The paper's backbone (ViT-S/16)."""
    return _vit("vit_small_patch16_224", {}, kwargs)


@register_backbone("vit_base_patch16_224")
@_signature_of(ViTBackbone)
def vit_base_patch16_224(**kwargs: Any) -> ViTBackbone:
    return _vit("vit_base_patch16_224", {}, kwargs)


# -- ResNets --------------------------------------------------------------------------------------------------


@register_backbone("resnet18")
@_signature_of(TimmCNNBackbone)
def resnet18(**kwargs: Any) -> TimmCNNBackbone:
    """ResNet-18 with the ImageNet stem: at 32 px its stages see 8x8 .. 1x1 maps, the fast CPU choice."""
    return _cnn("resnet18", {}, kwargs)


@register_backbone("resnet18_cifar")
@_signature_of(TimmCNNBackbone)
def resnet18_cifar(**kwargs: Any) -> TimmCNNBackbone:
    """ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool): 32x32 .. 4x4 maps at 32 px."""
    return _cnn("resnet18", dict(stem="cifar"), kwargs)


@register_backbone("resnet50")
@_signature_of(TimmCNNBackbone)
def resnet50(**kwargs: Any) -> TimmCNNBackbone:
    return _cnn("resnet50", {}, kwargs)


# -- tiny models for unit tests -------------------------------------------------------------------------------


@register_backbone("vit_test")
@_signature_of(ViTBackbone)
def vit_test(**kwargs: Any) -> ViTBackbone:
    """32-d, 4 blocks, 2 heads, 4 px patches, 16 px images: for unit tests only."""
    return _vit(
        "vit_tiny_patch16_224", dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2), kwargs
    )


@register_backbone("resnet_test")
@_signature_of(TimmCNNBackbone)
def resnet_test(**kwargs: Any) -> TimmCNNBackbone:
    """A one-block-per-stage ResNet with widths 8..64: for unit tests only."""
    return _cnn("resnet18", dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), img_size=16), kwargs)
