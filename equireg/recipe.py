"""The training recipe: backbone + invariant objective + (optional) equivariance loss, and one step's loss.

Each batch is split into b1 images that get the ordinary SSL views (policy T) and b2 images that get
equivariant views (policy T_eq: a shared crop, independent photometrics, group elements g_a, g_b). The
embeddings of *both* parts enter the invariant loss (SER's "2-view" setting: every image has two views), and
the b2 pair alone feeds the equivariance loss at the split layer: L = L_inv + λ·L_equiv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from equireg.backbones import Backbone, SplitOutput, create_backbone
from equireg.config import Config
from equireg.equivariance import EquivarianceLoss, EquivBatch, create_equiv_loss
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
    """Owns the online backbone, the objective (heads, teacher, loss) and the equivariance loss."""

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
        if equiv_loss is not None and (equiv_views is None or group is None):
            raise ValueError("an equivariance loss needs equivariant views and a group")
        self.backbone = backbone
        self.objective = objective
        self.equiv_loss = equiv_loss
        self.views = views
        self.equiv_views = equiv_views
        self.group = group
        self.b2_ratio = b2_ratio
        self.equiv_weight = equiv_weight

    def split_sizes(self, batch: int) -> tuple[int, int]:
        if self.equiv_loss is None:
            return batch, 0
        b2 = min(batch - 1, max(1, round(self.b2_ratio * batch)))
        return batch - b2, b2

    def forward(self, images: Tensor, progress: float, generator: torch.Generator | None = None) -> StepOutput:
        b1, b2 = self.split_sizes(images.shape[0])
        with torch.autocast(images.device.type, enabled=False):  # views in full precision
            v1, v2, _, _ = self.views(images[:b1], generator=generator)
            ev = self.equiv_views(images[b1:], generator=generator) if b2 else None
        z1, z2 = [self.backbone(v1)], [self.backbone(v2)]
        t1, t2 = [self.objective.teacher_forward(v1)], [self.objective.teacher_forward(v2)]
        parts: dict[str, Tensor] = {}
        loss_equiv = None
        if ev is not None:
            split = dict(with_map=self.equiv_loss.needs_maps, with_pooled=getattr(self.equiv_loss, "needs_pooled", False))
            on_a = self.backbone.forward_split(ev.view1, **split)
            on_b = self.backbone.forward_split(ev.view2, **split)
            tg_a, tg_b = self.objective.teacher_forward(ev.view1), self.objective.teacher_forward(ev.view2)
            z1.append(on_a.embedding)
            z2.append(on_b.embedding)
            t1.append(tg_a)
            t2.append(tg_b)
            assert self.group is not None and self.equiv_loss is not None
            batch = EquivBatch(
                group=self.group, g=ev.g, online=(on_a, on_b),
                target=(tg_a if tg_a is not None else on_a, tg_b if tg_b is not None else on_b),
            )
            loss_equiv = self.equiv_loss(batch)
        loss_inv = self.objective.loss(torch.cat(z1), torch.cat(z2), _cat_outputs(t1), _cat_outputs(t2), progress)
        parts["loss_inv"] = loss_inv.detach()
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
    group = create_group(cfg.equiv.group, **cfg.equiv.group_kwargs)
    info = backbone.info(backbone.split_layer)
    ekw = dict(cfg.equiv.kwargs)
    ekw.setdefault("temperature", cfg.equiv.temperature or objective.default_equiv_temperature)
    equiv_loss = create_equiv_loss(cfg.equiv.loss, in_channels=info.channels, **ekw)
    equiv_views = EquivariantViewPolicy(group, token_stride=info.stride, shared_crop=cfg.equiv.shared_crop)
    weight = cfg.equiv.weight if cfg.equiv.weight is not None else objective.default_equiv_lambda
    return SSLRecipe(backbone, objective, views, equiv_loss, equiv_views, group, cfg.equiv.b2_ratio, weight)
