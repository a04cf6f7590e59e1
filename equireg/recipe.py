"""The training recipe: backbone + invariant objective + (optional) equivariance loss, and one step's loss.

With SER (the default),
each batch is split into b1 images that get the ordinary SSL views (policy T) and b2 images that get
equivariant views (policy T_eq: a shared crop, independent photometrics, group elements g_a, g_b). The
embeddings of *both* parts enter the invariant loss (SER's "2-view" setting: every image has two views), and
the b2 pair alone feeds the equivariance loss at the split layer: L = L_inv + λ·L_equiv. Other losses
(AugSelf, EquiMod, E-SSL, STL) ask for other views through the :class:`EquivarianceLoss` interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from equireg.augment import split_batch
from equireg.backbones import Backbone, SplitOutput, create_backbone
from equireg.config import Config
from equireg.equivariance import EQUIV_LOSSES, EquivarianceLoss, create_equiv_loss
from equireg.equivariance.context import StepContext
from equireg.groups import Group, create_group
from equireg.objectives import Objective, create_objective


@dataclass
class StepOutput:
    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)  # detached components for logging


def _cat_outputs(outs: list[SplitOutput | None]) -> SplitOutput | None:
    """Concatenate embeddings of several forward passes (the teacher's b1 and b2 views)."""
    present = [o for o in outs if o is not None]
    if not present:
        return None
    return SplitOutput(embedding=torch.cat([o.embedding for o in present]), feature_map=None, pooled=None)


class SSLRecipe(nn.Module):
    """Owns the online backbone, the objective (heads, teacher, loss) and the equivariance loss.

    The recipe knows no method by name: the loss says what it needs (T_eq pairs on a b2 share, extra views,
    layer-k outputs of some views, a different T policy) through the :class:`EquivarianceLoss` interface, and
    reads it from a :class:`StepContext` that runs each forward pass at most once.
    """

    def __init__(
        self,
        backbone: Backbone,
        objective: Objective,
        views: Any,
        equiv_loss: EquivarianceLoss | None = None,
        equiv_views: Any | None = None,
        group: Group | None = None,
        b2_ratio: float = 0.25,
        equiv_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if equiv_loss is not None and equiv_loss.uses_equivariant_pair and (equiv_views is None or group is None):
            raise ValueError("an equivariance loss on T_eq pairs needs equivariant views and a group")
        self.backbone = backbone
        self.objective = objective
        self.equiv_loss = equiv_loss
        self.views = equiv_loss.adapt_ssl_views(views) if equiv_loss is not None else views
        self.equiv_views = equiv_views
        self.group = group
        self.b2_ratio = b2_ratio
        self.equiv_weight = equiv_weight

    @property
    def views_per_image(self) -> int:
        """Views each training image gets (2, plus a loss's extra views), for matching comparisons."""
        return 2 if self.equiv_loss is None else self.equiv_loss.views_per_image()

    def split_sizes(self, batch: int) -> tuple[int, int]:
        if self.equiv_loss is None or not self.equiv_loss.uses_equivariant_pair:
            return batch, 0
        b1, b2 = split_batch(batch, self.b2_ratio)
        if b1 == 0:  # keep at least one ordinary SSL pair
            b1, b2 = 1, batch - 1
        return b1, b2

    def context(self, images: Tensor, generator: torch.Generator | None = None) -> StepContext:
        """Make every view of one step (in full precision) and wrap them in a lazy :class:`StepContext`."""
        b1, b2 = self.split_sizes(images.shape[0])
        loss = self.equiv_loss
        with torch.autocast(images.device.type, enabled=False):
            pair = self.views(images[:b1], generator=generator)
            views = {"v1": pair.view1, "v2": pair.view2}
            ev = self.equiv_views(images[b1:], generator=generator) if b2 else None
            if ev is not None:
                views.update(eq_a=ev.view1, eq_b=ev.view2)
            if loss is not None:
                views.update(loss.extra_views(images[:b1], generator=generator))
        return StepContext(
            backbone=self.backbone, objective=self.objective, views=views,
            split_views=frozenset(loss.split_views) if loss is not None else frozenset(),
            with_map=bool(loss is not None and loss.needs_maps),
            with_pooled=bool(loss is not None and getattr(loss, "needs_pooled", False)),
            ssl_pair=pair, group=self.group if ev is not None else None, g=ev.g if ev is not None else None,
        )

    def forward(self, images: Tensor, progress: float, generator: torch.Generator | None = None) -> StepOutput:
        ctx = self.context(images, generator)
        # invariant loss over every T / T_eq pair (SER's 2-view setting: the b2 images join it too)
        # (passes run in a fixed order: pair by pair, online then teacher, so BN running statistics are reproducible)
        pairs = [("v1", "v2")] + ([("eq_a", "eq_b")] if "eq_a" in ctx.views else [])
        z1, z2, t1, t2 = [], [], [], []
        for a, b in pairs:
            z1.append(ctx.online(a).embedding)
            z2.append(ctx.online(b).embedding)
            t1.append(ctx.teacher(a))
            t2.append(ctx.teacher(b))
        loss_equiv = self.equiv_loss.compute(ctx) if self.equiv_loss is not None else None
        loss_inv = self.objective.loss(torch.cat(z1), torch.cat(z2), _cat_outputs(t1), _cat_outputs(t2), progress)
        parts: dict[str, Tensor] = {"loss_inv": loss_inv.detach()}
        loss = loss_inv
        if loss_equiv is not None:
            parts["loss_equiv"] = loss_equiv.detach()
            loss = loss + self.equiv_weight * loss_equiv
        parts["loss"] = loss.detach()
        return StepOutput(loss=loss, parts=parts)

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = [p for p in self.backbone.parameters() if p.requires_grad]
        params += list(self.objective.parameters_for_optimizer())
        if self.equiv_loss is not None:
            params += [p for p in self.equiv_loss.parameters() if p.requires_grad]
        return params

    def after_step(self, progress: float) -> None:
        self.objective.update_teacher(self.backbone, progress)


def build_recipe(cfg: Config) -> SSLRecipe:
    """Everything a run trains, from the config; raises ValueError (naming the choices) on bad names."""
    from equireg.augment import EquivariantViewPolicy, SSLViewPolicy

    bkw: dict[str, Any] = dict(cfg.backbone.kwargs)
    bkw.setdefault("img_size", cfg.data.image_size)
    if cfg.equiv.layer is not None:
        bkw["split_layer"] = cfg.equiv.layer
    if cfg.backbone.cls_position is not None:
        bkw["cls_position"] = cfg.backbone.cls_position
    try:
        backbone = create_backbone(cfg.backbone.name, **bkw)
    except TypeError as exc:
        raise ValueError(f"backbone {cfg.backbone.name!r} does not accept these options {sorted(bkw)}: {exc}") from None
    if cfg.equiv.layer is not None:
        backbone.check_layer(cfg.equiv.layer)
    objective = create_objective(cfg.objective.name, backbone=backbone, **cfg.objective.kwargs)
    views = SSLViewPolicy(output_size=cfg.data.image_size)
    if cfg.equiv.loss == "none":
        return SSLRecipe(backbone, objective, views)
    follows = getattr(EQUIV_LOSSES.get(cfg.equiv.loss), "follows_objective_defaults", True)
    ekw = dict(cfg.equiv.kwargs)
    if cfg.equiv.temperature is not None or follows:
        ekw.setdefault("temperature", cfg.equiv.temperature or objective.default_equiv_temperature)
    info = backbone.info(backbone.split_layer)
    try:
        equiv_loss = create_equiv_loss(cfg.equiv.loss, in_channels=_equiv_in_channels(backbone, cfg.equiv.loss), **ekw)
    except TypeError as exc:
        raise ValueError(f"equivariance loss {cfg.equiv.loss!r} does not accept these options {sorted(ekw)}: {exc}") from None
    equiv_loss.bind(backbone, cfg.data.image_size, views)
    group = equiv_views = None
    if equiv_loss.uses_equivariant_pair:
        group = create_group(cfg.equiv.group, **cfg.equiv.group_kwargs)
        equiv_views = EquivariantViewPolicy(group, token_stride=info.stride, shared_crop=cfg.equiv.shared_crop)
    if cfg.equiv.weight is not None:
        weight = cfg.equiv.weight
    else:
        weight = objective.default_equiv_lambda if follows else equiv_loss.default_weight
    return SSLRecipe(backbone, objective, views, equiv_loss, equiv_views, group, cfg.equiv.b2_ratio, weight)


def _equiv_in_channels(backbone: Backbone, loss_name: str) -> int:
    """Width of what the loss reads: the layer-k map's channels, or the final embedding's width for vector losses
    at the last layer (the coupled setting reads the final embedding; see ``StepContext.representation``)."""
    reads_vector = not getattr(EQUIV_LOSSES.get(loss_name), "needs_maps", True)
    if reads_vector and backbone.split_layer == backbone.num_layers:
        return backbone.embed_dim
    return backbone.info(backbone.split_layer).channels
