"""Invariance losses as small plain modules over tensors; each that crosses ranks has ``gather_distributed``."""

from equireg.objectives.losses.barlow import BarlowTwinsLoss
from equireg.objectives.losses.dino import DINOLoss
from equireg.objectives.losses.moco import MoCoV3Loss
from equireg.objectives.losses.ntxent import NTXentLoss

__all__ = ["BarlowTwinsLoss", "DINOLoss", "MoCoV3Loss", "NTXentLoss"]
