"""Batched view policies with recorded parameters: T (SSL pairs) and T_eq (SER's equivariant pairs)."""

from __future__ import annotations

from equireg.augment.equivariant import (
    VIEW_POLICIES,
    EquivariantViews,
    PairPolicy,
    SERPairPolicy,
    UniformPairPolicy,
    create_view_policy,
    default_view_policy,
    list_view_policies,
    register_view_policy,
    split_batch,
)
from equireg.augment.params import VECTOR_FIELDS, ViewParams, augself_targets
from equireg.augment.ssl_policy import SSLViewPolicy, ViewPair
from equireg.augment.views import (
    CropConfig,
    PhotometricConfig,
    ViewAugmentation,
    sample_crop_boxes,
    vector_stats,
    view_pair,
)

__all__ = [
    "VECTOR_FIELDS",
    "CropConfig",
    "EquivariantViews",
    "PairPolicy",
    "SERPairPolicy",
    "UniformPairPolicy",
    "VIEW_POLICIES",
    "create_view_policy",
    "default_view_policy",
    "list_view_policies",
    "register_view_policy",
    "PhotometricConfig",
    "SSLViewPolicy",
    "ViewAugmentation",
    "ViewPair",
    "ViewParams",
    "augself_targets",
    "sample_crop_boxes",
    "split_batch",
    "vector_stats",
    "view_pair",
]
