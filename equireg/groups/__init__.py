"""Symmetry groups with batched elements and an exact or interpolated action on spatial maps.

>>> from equireg.groups import create_group
>>> G = create_group("p4m")
>>> g = G.sample(8)                      # 8 per-sample elements
>>> h = g @ ~g                           # composition and inverse, batched
>>> bool(h.equals(G.identity).all())
True
"""

from equireg.groups.aniso import D4AxisScaleGroup
from equireg.groups.base import Elements, Group, GroupLawError
from equireg.groups.continuous import ScaleGroup, SO2Group
from equireg.groups.dihedral import DihedralGroup
from equireg.groups.finite import FiniteGroup
from equireg.groups.product import ContinuousProduct, FiniteProduct, direct_product
from equireg.groups.registry import GROUPS, create_group, list_groups, register_group
from equireg.groups.verify import LawCheck, verify_group

__all__ = [
    "GROUPS",
    "ContinuousProduct",
    "D4AxisScaleGroup",
    "DihedralGroup",
    "Elements",
    "FiniteGroup",
    "FiniteProduct",
    "Group",
    "GroupLawError",
    "LawCheck",
    "SO2Group",
    "ScaleGroup",
    "create_group",
    "direct_product",
    "list_groups",
    "register_group",
    "verify_group",
]
