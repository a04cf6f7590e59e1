"""The training recipe: backbone + invariant objective + (optional) equivariance loss, and one step's loss.

With SER (the default), each batch is split into b1 images that get the ordinary SSL views (policy T) and b2 images
that get equivariant views (a T_eq view policy: a shared crop, independent photometrics, group elements g_a, g_b).
The embeddings of *both* parts enter the invariant loss (SER's "2-view" setting: every image has two views), and
the b2 pair alone feeds the equivariance loss at the split layer: L = L_inv + λ·L_equiv. Other losses (AugSelf,
EquiMod, E-SSL, STL) ask for other views through the :class:`EquivarianceLoss` interface.

Every default here has one owner: the objective class declares its official crop scale and ViT settings, the loss
class its architecture ([CLS] position), λ and τ, the view-policy registry which T_eq suits a group, and
:func:`split_batch` the b1/b2 split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from equireg.augment import PairPolicy, SSLViewPolicy, create_view_policy, default_view_policy, split_batch
from equireg.augment.views import CropConfig
from equireg.backbones import Backbone, create_backbone
from equireg.config import Config
from equireg.data.base import CropSpec
from equireg.equivariance import EquivarianceLoss, View, create_equiv_loss, equiv_loss_class
from equireg.equivariance.context import StepContext
from equireg.groups import create_group
from equireg.objectives import Objective, create_objective, objective_class
from equireg.plugins import import_plugins

FIRST, SECOND = (View.V1, View.EQ_A), (View.V2, View.EQ_B)  # the two "views" of the invariant loss


@dataclass
class StepOutput:
    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)  # detached components for logging


class SSLRecipe(nn.Module):
    """Owns the online backbone, the objective (heads, teacher, loss) and the equivariance loss.

    The recipe knows no method by name: the loss says what it needs (T_eq pairs on a b2 share, extra views,
    layer-k outputs of some views, a different T policy) through its declared attributes, and reads it from a
    :class:`StepContext` that runs each forward pass at most once. ``rank``/``world_size`` (set by the trainer under
    torchrun) make every policy draw for the global batch and keep this rank's rows.
    """

    def __init__(
        self,
        backbone: Backbone,
        objective: Objective,
        views: Any,
        equiv_loss: EquivarianceLoss | None = None,
        pair_policy: PairPolicy | None = None,
        b2_ratio: float = 0.25,
    ) -> None:
        super().__init__()
        if equiv_loss is not None and equiv_loss.uses_pairs() and pair_policy is None:
            raise ValueError("an equivariance loss on T_eq pairs needs an equivariant view policy")
        self.backbone = backbone
        self.objective = objective
        self.equiv_loss = equiv_loss
        self.crop: CropConfig = views.views[0].crop  # T's RandomResizedCrop, also what a folder loader cuts
        self.views = equiv_loss.adapt_ssl_views(views) if equiv_loss is not None else views
        self.pair_policy = pair_policy if equiv_loss is not None and equiv_loss.uses_pairs() else None
        self.b2_ratio = b2_ratio
        self.rank, self.world_size = 0, 1

    @property
    def views_per_image(self) -> int:
        """Views each training image gets (2, plus a loss's extra views), for matching comparisons."""
        return 2 if self.equiv_loss is None else self.equiv_loss.views_per_image()

    def describe(self) -> dict[str, Any]:
        """What a result row must say to be attributable: architecture, views and their policy, sizes."""
        loss = self.equiv_loss
        return {
            "cls_position": getattr(self.backbone, "cls_position", "n/a"),
            "view_policy": self.pair_policy.name if self.pair_policy is not None else "none",
            "views_per_image": self.views_per_image,
            "crop_min": self.crop.scale[0],
            "equiv_weight": loss.weight if loss is not None else None,
            "split_layer": self.backbone.split_layer if loss is not None else None,
            "num_layers": self.backbone.num_layers,
            "params_total": _count(self.trainable_parameters()),
            "params_backbone": _count(self.backbone.parameters()),
            "params_equiv": _count(loss.parameters()) if loss is not None else 0,
        }

    def crop_spec(self, size: int) -> CropSpec:
        """What an image-folder loader must cut for this recipe: two of T's crops of every original image; raises
        ValueError when the equivariance loss makes its own views from whole images."""
        if self.equiv_loss is not None and self.equiv_loss.needs_full_images:
            raise ValueError(f"{type(self.equiv_loss).__name__} makes its own views from whole images, which an image "
                             f"folder's loader does not keep (it cuts crops of the original files); train it on an "
                             f"in-memory dataset")
        return CropSpec(size, scale=self.crop.scale, ratio=self.crop.ratio, flip_p=self.crop.flip_p, num_views=2)

    def split_sizes(self, batch: int) -> tuple[int, int]:
        return split_batch(batch, self.b2_ratio) if self.pair_policy is not None else (batch, 0)

    def context(self, images: Tensor, generator: torch.Generator | None = None) -> StepContext:
        """Make every view of one step (in full precision) and wrap them in a lazy :class:`StepContext`."""
        b1, b2 = self.split_sizes(images.shape[0])
        loss, shard = self.equiv_loss, {"rank": self.rank, "world_size": self.world_size}
        with torch.autocast(images.device.type, enabled=False):
            pair = self.views(images[:b1], generator=generator, **shard)
            views: dict[str, Tensor] = {View.V1: pair.view1, View.V2: pair.view2}
            eq = self.pair_policy(images[b1:], generator=generator, **shard) if b2 else None
            if eq is not None:
                views.update({View.EQ_A: eq.view1, View.EQ_B: eq.view2})
            if loss is not None:
                views.update(loss.extra_views(images[:b1], generator, **shard))
        teacher = self.objective.teacher_backbone
        return StepContext(
            backbone=self.backbone, teacher=teacher, views=views,
            split_views=frozenset(loss.split_views) if loss is not None else frozenset(),
            reads=loss.reads if loss is not None else None,
            teacher_maps=bool(loss is not None and loss.reads == "map" and teacher is not None),
            ssl_pair=pair, pair=eq,
        )

    def forward(self, images: Tensor, progress: float, generator: torch.Generator | None = None) -> StepOutput:
        ctx = self.context(images, generator)
        # SER's 2-view setting: the b2 pair joins the invariant loss. Passes run in a fixed order (online first
        # views, online second views, then the teacher's), so BatchNorm running statistics are reproducible.
        z1, z2 = ctx.embeddings(FIRST), ctx.embeddings(SECOND)
        t1, t2 = ctx.embeddings(FIRST, teacher=True), ctx.embeddings(SECOND, teacher=True)
        loss_equiv = self.equiv_loss.compute(ctx) if self.equiv_loss is not None else None
        loss_inv = self.objective.loss(z1, z2, t1, t2, progress)
        parts: dict[str, Tensor] = {"loss_inv": loss_inv.detach()}
        loss = loss_inv
        if loss_equiv is not None:
            parts["loss_equiv"] = loss_equiv.detach()
            loss = loss + self.equiv_loss.weight * loss_equiv  # type: ignore[union-attr]
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


def _count(params: Any) -> int:
    return sum(p.numel() for p in params)


def _options(what: str, build: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a factory; a keyword it does not take is the user's mistake, reported with the option names."""
    try:
        return build(*args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"{what} does not accept these options {sorted(k for k in kwargs if k != 'context')}: "
                         f"{exc}") from None


def build_backbone(cfg: Config) -> Backbone:
    """The online backbone a run trains (and evaluation loads): the method's architecture, the objective's ViT
    settings, the split layer; ``backbone.kwargs`` and ``backbone.cls_position`` override them."""
    import_plugins(cfg.plugins)
    loss_cls = equiv_loss_class(cfg.equiv.loss) if cfg.equiv.loss != "none" else None
    context = {
        "img_size": cfg.data.image_size, "split_layer": cfg.equiv.layer,
        "cls_position": cfg.backbone.cls_position or (loss_cls.cls_position if loss_cls else "input"),
        "vit_settings": objective_class(cfg.objective.name).vit_settings,
    }
    backbone = _options(f"backbone {cfg.backbone.name!r}", create_backbone, cfg.backbone.name, context=context,
                        **cfg.backbone.kwargs)
    if cfg.equiv.layer is not None:
        backbone.check_layer(cfg.equiv.layer)
    return backbone


def build_recipe(cfg: Config) -> SSLRecipe:
    """Everything a run trains, from the config; raises ValueError (naming the choices) on bad names or options."""
    backbone = build_backbone(cfg)
    objective_cls = objective_class(cfg.objective.name)
    preset = {"preset": cfg.objective.preset} if objective_cls.presets and cfg.objective.preset else {}
    objective = _options(f"objective {cfg.objective.name!r}", create_objective, cfg.objective.name,
                         backbone=backbone, **{**preset, **cfg.objective.kwargs})
    crop_min = cfg.views.crop_min or type(objective).crop_min
    views = SSLViewPolicy(output_size=cfg.data.image_size, crop_min=crop_min)
    if cfg.equiv.loss == "none":
        return SSLRecipe(backbone, objective, views)
    loss_cls = equiv_loss_class(cfg.equiv.loss)
    last = backbone.split_layer == backbone.num_layers
    in_channels = backbone.embed_dim if loss_cls.reads == "vector" and last else backbone.info().channels
    context = {"in_channels": in_channels, "objective": cfg.objective.name, "backbone": backbone,
               "image_size": cfg.data.image_size, "ssl_views": views}
    user = {**cfg.equiv.kwargs, "weight": cfg.equiv.weight, "temperature": cfg.equiv.temperature}
    equiv_loss = _options(f"equivariance loss {cfg.equiv.loss!r}", create_equiv_loss, cfg.equiv.loss,
                          context=context, **user)
    pair_policy = None
    if loss_cls.uses_pairs():
        group = create_group(cfg.equiv.group, **cfg.equiv.group_kwargs)
        name = cfg.views.equivariant or default_view_policy(group)
        context = {"group": group, "token_stride": backbone.info().stride, "output_size": cfg.data.image_size,
                   "crop": CropConfig(scale=(crop_min, 1.0))}
        pair_policy = _options(f"view policy {name!r}", create_view_policy, name, context=context, **cfg.views.kwargs)
        _check_pair_batch(backbone, pair_policy, cfg)
    return SSLRecipe(backbone, objective, views, equiv_loss, pair_policy, cfg.equiv.b2_ratio)


def _check_pair_batch(backbone: Backbone, policy: PairPolicy, cfg: Config) -> None:
    """SER's views have their own grids, so they run in their own backbone calls; a BatchNorm cannot normalise a
    one-image call (its statistics are undefined), which would fail mid-training."""
    _, b2 = split_batch(cfg.optim.batch_size, cfg.equiv.b2_ratio)
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())
    if b2 < 2 and has_batchnorm and policy.name == "ser":
        raise ValueError(
            f"equiv.b2_ratio={cfg.equiv.b2_ratio} gives {b2} equivariant image per batch of {cfg.optim.batch_size}; "
            f"SER's views run in their own backbone calls, and {cfg.backbone.name}'s BatchNorm cannot normalise a "
            f"one-image batch: raise equiv.b2_ratio to at least {2 / cfg.optim.batch_size:.3f} or the batch size")
