"""Equivariance losses (SER and, as plug-ins, the comparison methods) with their registry."""

from equireg.equivariance.base import (
    EQUIV_LOSSES,
    EquivarianceLoss,
    EquivBatch,
    create_equiv_loss,
    list_equiv_losses,
    register_equiv_loss,
)
from equireg.equivariance.ser import SERLoss, token_info_nce, token_projector

__all__ = [
    "EQUIV_LOSSES",
    "EquivBatch",
    "EquivarianceLoss",
    "SERLoss",
    "create_equiv_loss",
    "list_equiv_losses",
    "register_equiv_loss",
    "token_info_nce",
    "token_projector",
]
