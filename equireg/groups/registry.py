"""The group registry: built-in names, parametric families (c{N}, d{N}) and products spelled ``a*b``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from equireg.groups.aniso import D4AxisScaleGroup
from equireg.groups.base import Group
from equireg.groups.continuous import ScaleGroup, SO2Group
from equireg.groups.dihedral import DihedralGroup
from equireg.groups.product import direct_product
from equireg.registry import Factory, Registry

_FAMILY = re.compile(r"^([cd])(\d+)$")


def _resolve(name: str) -> Factory[Group] | None:
    if "*" in name:
        parts = [p.strip() for p in name.split("*")]
        if any(not p for p in parts):
            return None
        return lambda **kwargs: _product_of(parts, kwargs)
    match = _FAMILY.match(name)
    if match:
        kind, n = match.group(1), int(match.group(2))
        if n < 1:
            return None
        return lambda: DihedralGroup(n, reflections=(kind == "d"))
    return None


def _accepted(factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _product_of(parts: list[str], kwargs: dict[str, Any]) -> Group:
    factories = [GROUPS.get(p) for p in parts]
    used: set[str] = set()
    groups = []
    for factory in factories:
        mine = _accepted(factory, kwargs)
        used |= set(mine)
        groups.append(factory(**mine))
    unused = set(kwargs) - used
    if unused:
        raise ValueError(f"no factor of {'*'.join(parts)!r} takes {sorted(unused)}")
    result = groups[0]
    for g in groups[1:]:
        result = direct_product(result, g)
    return result


GROUPS: Registry[Group] = Registry("group", entry_point_group="equireg.groups", resolver=_resolve)


def register_group(
    name: str | None = None, *, verify: bool = False, override: bool = False
) -> Callable[[Factory[Group]], Factory[Group]]:
    """Register a group factory; with ``verify=True`` the default-constructed group must pass
    :func:`~equireg.groups.verify_group` at registration time (a broken group is rejected, naming the law)."""

    def decorator(fn: Factory[Group]) -> Factory[Group]:
        if verify:
            from equireg.groups.verify import verify_group

            verify_group(fn())
        return GROUPS.register(name, override=override)(fn)

    return decorator


def create_group(name: str, **kwargs: Any) -> Group:
    """Build a group by name: a registered name, ``c{N}``/``d{N}``, or a product such as ``p4m*scale``."""
    return GROUPS.create(name, **kwargs)


def list_groups(pattern: str = "*") -> list[str]:
    """Registered group names (parametric families c{N}, d{N} and products a*b are also accepted)."""
    return GROUPS.names(pattern)


@register_group("trivial")
def trivial() -> Group:
    """The one-element group: no symmetry (the baseline)."""
    return DihedralGroup(1, reflections=False, name="trivial")


@register_group("flip")
def flip() -> Group:
    """Horizontal reflection (mirror across the vertical axis), {e, m}."""
    return DihedralGroup(1, reflections=True, name="flip")


@register_group("c4")
def c4() -> Group:
    """The four quarter turns (p4's point group); exact."""
    return DihedralGroup(4, reflections=False, name="c4")


@register_group("p4m")
def p4m() -> Group:
    """D4 on the grid: quarter turns and the four mirrors (p4m's point group); exact."""
    return DihedralGroup(4, reflections=True, name="p4m")


@register_group("scale")
def scale(min_scale: float = 0.7, max_scale: float = 1.3) -> Group:
    """Isotropic scale factors (side ratios), sampled log-uniformly from 0.7–1.3; interpolated. SER's own views
    draw a token-*area* factor in 0.7–1.3 and an aspect ratio instead (view policy ``ser``, group ``p4m_aniso``)."""
    return ScaleGroup(min_scale, max_scale)


@register_group("p4m_aniso")
def p4m_aniso(min_scale: float = 0.7, max_scale: float = 1.3) -> Group:
    """D4 followed by an axis-aligned rescale of the grid: the relative transform of SER's equivariant views."""
    return D4AxisScaleGroup(min_scale, max_scale)


@register_group("so2")
def so2() -> Group:
    """Rotations by any angle; interpolated except for quarter turns."""
    return SO2Group()
