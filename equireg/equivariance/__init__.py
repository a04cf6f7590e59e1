"""Equivariance losses (SER and, as plug-ins, the comparison methods) with their registry."""

from equireg.equivariance.base import (
    EQUIV_LOSSES,
    EquivarianceLoss,
    EquivBatch,
    View,
    create_equiv_loss,
    equiv_loss_class,
    list_equiv_losses,
    register_equiv_loss,
)
from equireg.equivariance.ser import ArchitectureControl, SERLoss, token_info_nce, token_projector
from equireg.equivariance.context import StepContext  # noqa: E402  (after base: it imports EquivBatch)
from equireg.equivariance.augself import AugSelfLoss  # noqa: E402  (comparison methods register themselves)
from equireg.equivariance.equimod import EquiModLoss  # noqa: E402
from equireg.equivariance.essl import ESSLLoss  # noqa: E402
from equireg.equivariance.stl import STLLoss  # noqa: E402

__all__ = [
    "EQUIV_LOSSES",
    "ArchitectureControl",
    "View",
    "equiv_loss_class",
    "AugSelfLoss",
    "ESSLLoss",
    "EquiModLoss",
    "STLLoss",
    "StepContext",
    "EquivBatch",
    "EquivarianceLoss",
    "SERLoss",
    "create_equiv_loss",
    "list_equiv_losses",
    "register_equiv_loss",
    "token_info_nce",
    "token_projector",
]
