"""Invariance objectives (MoCo-v3, DINO, Barlow Twins, SimCLR): heads, losses, teachers and their registry.

``create_objective("moco", backbone=bb, preset="small")`` builds one; ``list_objectives()`` names them;
``@register_objective("name")`` on an :class:`Objective` subclass adds one (see docs/objectives.md).
"""

from equireg.objectives.base import Objective, SplitOutputLike, cosine_momentum, ema_update_
from equireg.objectives.heads import DINOHead, MLPHead, WeightNormLinear
from equireg.objectives.losses import BarlowTwinsLoss, DINOLoss, MoCoV3Loss, NTXentLoss
from equireg.objectives.registry import OBJECTIVES, create_objective, list_objectives, objective_class, register_objective

# Importing the method modules registers them.
from equireg.objectives.barlow import BarlowTwinsObjective
from equireg.objectives.dino import DINOObjective
from equireg.objectives.moco import MoCoV3Objective
from equireg.objectives.simclr import SimCLRObjective

__all__ = [
    "OBJECTIVES",
    "BarlowTwinsLoss",
    "BarlowTwinsObjective",
    "DINOHead",
    "DINOLoss",
    "DINOObjective",
    "MLPHead",
    "MoCoV3Loss",
    "MoCoV3Objective",
    "NTXentLoss",
    "Objective",
    "SimCLRObjective",
    "SplitOutputLike",
    "WeightNormLinear",
    "cosine_momentum",
    "create_objective",
    "ema_update_",
    "list_objectives",
    "objective_class",
    "register_objective",
]
