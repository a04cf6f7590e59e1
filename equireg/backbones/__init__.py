"""Backbones split at an intermediate layer: the invariant embedding plus the layer-k spatial map.

``create_backbone("vit_tiny_p4_32", split_layer=3)``; ``create_backbone("timm:<model>")`` wraps any timm
ViT or CNN. See docs/backbones.md.
"""

from __future__ import annotations

from equireg.backbones.base import Backbone, LayerInfo, SplitOutput
from equireg.backbones.cnn import TimmCNNBackbone
from equireg.backbones.factory import BACKBONES, create_backbone, list_backbones, register_backbone
from equireg.backbones.vit import CLS_POSITIONS, ViTBackbone
from equireg.backbones import presets  # noqa: F401  (registers the named backbones)

__all__ = [
    "BACKBONES",
    "CLS_POSITIONS",
    "Backbone",
    "LayerInfo",
    "SplitOutput",
    "TimmCNNBackbone",
    "ViTBackbone",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
