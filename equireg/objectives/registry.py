"""Registry of objectives: ``register_objective``, ``create_objective``, ``list_objectives``.

Third-party packages add objectives through the ``equireg.objectives`` entry-point group (see docs/objectives.md).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from equireg.objectives.base import Objective
from equireg.registry import Registry

OBJECTIVES: Registry[Objective] = Registry("objective", entry_point_group="equireg.objectives", base=Objective)
register_objective = OBJECTIVES.register


def create_objective(name: str, backbone: nn.Module, **hparams: Any) -> Objective:
    """Build objective ``name`` for the online ``backbone``; ``None`` hparams fall back to the defaults."""
    return OBJECTIVES.create(name, backbone=backbone, **hparams)


def objective_class(name: str) -> type[Objective]:
    """The registered class of objective ``name`` (its declared attributes: ``crop_min``, ``vit_settings``, ...)."""
    return OBJECTIVES.get(name)  # type: ignore[return-value]


def list_objectives(pattern: str = "*") -> list[str]:
    """Registered objective names matching the fnmatch ``pattern``."""
    return OBJECTIVES.names(pattern)
