"""The equivariance-loss contract and its registry.

An equivariance loss reads one training step's equivariant pair through :class:`EquivBatch` and returns a
scalar. Losses are registered like every other plug-in (``@register_equiv_loss("name")``) and built with
``create_equiv_loss(name, in_channels=..., **kwargs)``; the recipe adds ``weight * loss`` to the invariant
objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from equireg.groups import Elements, Group
from equireg.registry import Registry

if TYPE_CHECKING:
    from equireg.equivariance.context import StepContext


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
    extras: dict[str, Any] = field(default_factory=dict)


class EquivarianceLoss(nn.Module):
    """Base class: ``forward(batch: EquivBatch) -> Tensor``; ``needs_maps`` says whether layer-k maps are read.

    The class attributes and hooks below tell the recipe what a loss needs, so the recipe has no per-method
    branches (the defaults describe SER):

    * ``uses_equivariant_pair``: split each batch and give the b2 share T_eq pairs (views ``eq_a``/``eq_b``);
    * ``split_views``: views whose layer-k outputs the loss reads (the online forward of these returns maps /
      pooled vectors as ``needs_maps`` / ``needs_pooled`` say; the others only their embedding);
    * ``extra_views_per_image``: views beyond the two per image (E-SSL 4, EquiMod 1), for reports;
    * ``follows_objective_defaults``: take λ and τ from the objective's SER defaults (else ``default_weight``
      and the loss's own temperature default);
    * :meth:`bind`, :meth:`adapt_ssl_views`, :meth:`extra_views`, :meth:`compute`: see each.
    """

    needs_maps: bool = True
    needs_pooled: bool = False
    uses_equivariant_pair: ClassVar[bool] = True
    split_views: ClassVar[tuple[str, ...]] = ("eq_a", "eq_b")
    extra_views_per_image: ClassVar[int] = 0
    follows_objective_defaults: ClassVar[bool] = True
    default_weight: ClassVar[float] = 1.0

    def forward(self, batch: EquivBatch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def bind(self, backbone: nn.Module, image_size: int, ssl_views: Any) -> None:
        """Called once by ``build_recipe`` with the backbone, image side and T policy (e.g. parameter stats)."""

    def adapt_ssl_views(self, views: Any) -> Any:
        """The T policy to use instead of ``views`` (STL aligns transforms across image pairs); default: as is."""
        return views

    def extra_views(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Additional named inputs made from the step's (non-b2) images, forwarded lazily by the context."""
        return {}

    def compute(self, ctx: StepContext) -> Tensor:
        """The loss of one step from the shared :class:`StepContext` (SER: from its equivariant pair)."""
        return self(ctx.equiv_batch())

    @classmethod
    def views_per_image(cls) -> int:
        return 2 + cls.extra_views_per_image


EQUIV_LOSSES: Registry[EquivarianceLoss] = Registry("equivariance loss", entry_point_group="equireg.equiv_losses")
register_equiv_loss = EQUIV_LOSSES.register


def create_equiv_loss(name: str, **kwargs: Any) -> EquivarianceLoss:
    return EQUIV_LOSSES.create(name, **kwargs)


def list_equiv_losses(pattern: str = "*") -> list[str]:
    return EQUIV_LOSSES.names(pattern)
