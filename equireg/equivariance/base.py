"""The equivariance-loss contract, the names of a step's views, and the registry.

An equivariance loss reads one training step through a :class:`StepContext` (SER: its equivariant pair as an
:class:`EquivBatch`) and returns a scalar. Losses are registered classes (``@register_equiv_loss("name")`` on an
:class:`EquivarianceLoss` subclass) built with ``create_equiv_loss(name, context, **options)``; each owns its weight
λ (and SER its per-objective λ and τ), and the recipe adds ``loss.weight * loss`` to the invariant objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from equireg.groups import Elements, Group
from equireg.registry import Registry

if TYPE_CHECKING:
    from equireg.equivariance.context import StepContext


class View(str, Enum):
    """Names of a step's views (a loss's extra views are named here too, so no name is a loose string)."""

    V1 = "v1"  # T pair of the b1 images
    V2 = "v2"
    EQ_A = "eq_a"  # T_eq pair of the b2 images
    EQ_B = "eq_b"
    X0 = "x0"  # EquiMod: the images as loaded
    ROT = "rot"  # E-SSL: four rotations of one small crop

    def __str__(self) -> str:
        return self.value


@dataclass
class EquivBatch:
    """The equivariant pair of one step.

    ``online``/``target`` hold the backbone outputs (``SplitOutput``) of views a and b; ``target`` comes from the
    objective's teacher when it has one (no gradient), else it is ``online`` itself. ``g`` is the relative
    element g_b·g_a⁻¹ per sample, so ``group.act(map_a, g)`` lands in view b's frame.
    """

    group: Group
    g: Elements
    online: tuple[Any, Any]
    target: tuple[Any, Any]


class EquivarianceLoss(nn.Module):
    """Base class of the equivariance losses; the recipe adds ``loss.weight * loss.compute(ctx)`` to L_inv.

    What the recipe reads off the class before building anything (declared, so the recipe has no per-method
    branches; the defaults describe SER):

    * ``reads``: ``"map"`` (the layer-k spatial map) or ``"vector"`` (the layer-k vector: the intermediate [CLS]
      through its own LayerNorm, pooled tokens/stage, or the final embedding when k is the last layer);
    * ``split_views``: the views whose layer-k outputs it reads; :attr:`View.EQ_A`/:attr:`View.EQ_B` there means the
      loss uses T_eq pairs on a b2 share of each batch;
    * ``cls_position``: the ViT architecture the method was published with (``"after_equiv"`` for SER's late
      [CLS], ``"input"`` for a standard ViT);
    * ``extra_views_per_image``: views beyond the two per image (E-SSL 4, EquiMod 1), for matched comparisons;
    * ``needs_full_images``: the loss makes its own views from the step's whole images (EquiMod's x0, E-SSL's
      small crops, STL's aligned crops), so it cannot train on the crops an image-folder loader cuts.

    Hooks: :meth:`adapt_ssl_views` (once, at build time), :meth:`extra_views` (per step) and :meth:`compute`.
    Factories receive context for the parameters they declare: ``in_channels`` (width of what ``reads`` gives),
    ``objective`` (the invariant objective's name), ``backbone``, ``image_size``, ``ssl_views`` (the T policy).
    """

    reads: ClassVar[Literal["map", "vector"]] = "map"
    split_views: ClassVar[tuple[str, ...]] = (View.EQ_A, View.EQ_B)
    cls_position: ClassVar[Literal["input", "after_equiv"]] = "input"
    extra_views_per_image: ClassVar[int] = 0
    needs_full_images: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        self.weight = float(weight)

    @classmethod
    def uses_pairs(cls) -> bool:
        """Whether each batch is split and its b2 share gets T_eq pairs."""
        return View.EQ_A in cls.split_views

    @classmethod
    def views_per_image(cls) -> int:
        return 2 + cls.extra_views_per_image

    def adapt_ssl_views(self, views: Any) -> Any:
        """The T policy to use instead of ``views`` (STL aligns transforms across image pairs); default: as is."""
        return views

    def extra_views(self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0,
                    world_size: int = 1) -> dict[str, Tensor]:
        """Additional named inputs made from the step's b1 images (drawn for the global batch under DDP)."""
        return {}

    def compute(self, ctx: StepContext) -> Tensor | None:
        """The loss of one step from the shared :class:`StepContext` (SER: from its equivariant pair); None when
        the method adds no term (the architecture-control arm)."""
        return self(ctx.equiv_batch())

    def forward(self, batch: EquivBatch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


EQUIV_LOSSES: Registry[EquivarianceLoss] = Registry("equivariance loss", entry_point_group="equireg.equiv_losses",
                                                    base=EquivarianceLoss)
register_equiv_loss = EQUIV_LOSSES.register


def create_equiv_loss(name: str, context: Mapping[str, Any] | None = None, **kwargs: Any) -> EquivarianceLoss:
    """Build a registered loss with the user's options and the framework's ``context`` (module docstring)."""
    return EQUIV_LOSSES.create(name, context, **kwargs)


def equiv_loss_class(name: str) -> type[EquivarianceLoss]:
    """The registered class of loss ``name``, whose declared attributes the recipe reads before building it."""
    return EQUIV_LOSSES.get(name)  # type: ignore[return-value]


def list_equiv_losses(pattern: str = "*") -> list[str]:
    return EQUIV_LOSSES.names(pattern)
