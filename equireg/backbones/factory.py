"""Backbone registry: named presets, third-party entry points, and ``timm:<name>`` for any timm model."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import partial
from typing import Any

from equireg.backbones.base import Backbone
from equireg.registry import Factory, Registry, UnknownNameError

TIMM_PREFIX = "timm:"
# timm modules whose models are plain VisionTransformers (routed to the ViT wrapper).
_VIT_MODULES = ("vision_transformer", "deit")


def _resolve_timm(name: str) -> Factory[Backbone] | None:
    """``timm:<model>`` -> a factory for the matching wrapper; other names are not ours (None)."""
    if not name.startswith(TIMM_PREFIX):
        return None
    import equireg  # noqa: F401  (torchvision shim before timm)
    import timm
    from timm.models import is_model_in_modules

    from equireg.backbones.cnn import TimmCNNBackbone
    from equireg.backbones.vit import ViTBackbone

    model_name = name[len(TIMM_PREFIX):]
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models()"
        raise UnknownNameError(f"unknown timm model {model_name!r}{hint}")
    if is_model_in_modules(model_name, list(_VIT_MODULES)):
        return partial(ViTBackbone, model_name)
    return partial(TimmCNNBackbone, model_name)


BACKBONES: Registry[Backbone] = Registry("backbone", entry_point_group="equireg.backbones", resolver=_resolve_timm)
register_backbone = BACKBONES.register


def create_backbone(name: str, context: Mapping[str, Any] | None = None, **kwargs: Any) -> Backbone:
    """Build a registered backbone (or ``timm:<model>``); kwargs that are None keep the preset defaults.

    Common kwargs: ``split_layer``, ``in_chans``, ``img_size``; ViT: ``cls_position``, ``freeze_patch_embed``,
    ``drop_path_rate``, ``init``, ``pos_resample``; CNN: ``stem``. Others go to ``timm.create_model``.
    ``context`` holds the framework's values (``img_size``, ``split_layer``, ``cls_position``, ``vit_settings``),
    passed only to the parameters the factory declares (docs/plugins.md).
    """
    try:
        BACKBONES.get(name)
    except UnknownNameError as exc:
        if name.strip().lower().startswith(TIMM_PREFIX):
            raise
        raise UnknownNameError(f"{exc}; or 'timm:<model>' for any timm model") from None
    backbone = BACKBONES.create(name, context, **kwargs)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"backbone factory {name!r} returned {type(backbone).__name__}, not an equireg Backbone")
    return backbone


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the fnmatch ``pattern`` (``timm:*`` names are not listed)."""
    return BACKBONES.names(pattern)
