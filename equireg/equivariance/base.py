"""The equivariance-loss contract and its registry.

An equivariance loss reads one training step's equivariant pair through :class:`EquivBatch` and returns a
scalar. Losses are registered like every other plug-in (``@register_equiv_loss("name")``) and built with
``create_equiv_loss(name, in_channels=..., **kwargs)``; the recipe adds ``weight * loss`` to the invariant
objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from equireg.groups import Elements, Group
from equireg.registry import Registry


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
    """Base class: ``forward(batch: EquivBatch) -> Tensor``; ``needs_maps`` says whether layer-k maps are read."""

    needs_maps: bool = True

    def forward(self, batch: EquivBatch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


EQUIV_LOSSES: Registry[EquivarianceLoss] = Registry("equivariance loss", entry_point_group="equireg.equiv_losses")
register_equiv_loss = EQUIV_LOSSES.register


def create_equiv_loss(name: str, **kwargs: Any) -> EquivarianceLoss:
    return EQUIV_LOSSES.create(name, **kwargs)


def list_equiv_losses(pattern: str = "*") -> list[str]:
    return EQUIV_LOSSES.names(pattern)
