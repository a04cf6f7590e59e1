"""Direct products G × H: elements are pairs, composed factor-wise; rho_(g,h) = rho_g ∘ rho_h.

The product action is a group action only when the factors' actions commute (true for the D4 family with
isotropic scale, false for e.g. c4 × flip); ``verify_group`` detects a non-commuting product through the
homomorphism law. A product of finite groups is itself finite (code = a·|H| + b) and keeps the regular
representation; a product with a continuous factor stores elements as float vectors [g-params, h-params].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from equireg.groups.base import ElementLike, Elements, Group
from equireg.groups.finite import FiniteGroup


def _act_factors(
    factors: Sequence[Group], parts: Sequence[Tensor], x: Tensor, out_size: tuple[int, int] | None
) -> Tensor:
    # the grid changes (out_size) in the last factor that can resample, so exact factors stay exact
    resampler = max((i for i, f in enumerate(factors) if not f.is_exact), default=len(factors) - 1)
    for i in reversed(range(len(factors))):  # rightmost acts first
        x = factors[i]._act_spatial(x, parts[i], out_size if i == resampler else None)
    return x


class FiniteProduct(FiniteGroup):
    """Product of finite groups with integer codes a·|H| + b."""

    def __init__(self, left: FiniteGroup, right: FiniteGroup) -> None:
        super().__init__()
        self.factors: tuple[FiniteGroup, FiniteGroup] = (left, right)
        self.name = f"{left.name}*{right.name}"
        self.host_elements = left.host_elements and right.host_elements
        self.is_exact = left.is_exact and right.is_exact
        self.action_tolerance = left.action_tolerance + right.action_tolerance  # errors add up
        self.param_names = left.param_names + right.param_names
        n_l, n_r = left.order, right.order
        a, b = torch.arange(n_l * n_r) // n_r, torch.arange(n_l * n_r) % n_r
        self._table = left._table[a.view(-1, 1), a.view(1, -1)] * n_r + right._table[b.view(-1, 1), b.view(1, -1)]
        self._inv = left._inv[a] * n_r + right._inv[b]
        self._identity_code = left._identity_code * n_r + right._identity_code

    def _key(self) -> tuple[Any, ...]:
        return self.factors

    def split(self, g: Tensor) -> tuple[Tensor, Tensor]:
        n_r = self.factors[1].order
        return g // n_r, g % n_r

    def join(self, left: Tensor, right: Tensor) -> Tensor:
        return left * self.factors[1].order + right

    def make(self, **params: Any) -> Elements:
        l_par = {k: v for k, v in params.items() if k in self.factors[0].param_names}
        r_par = {k: v for k, v in params.items() if k in self.factors[1].param_names}
        unknown = set(params) - set(l_par) - set(r_par)
        if unknown:
            raise ValueError(f"{self.name!r} elements take {list(self.param_names)}, got {sorted(unknown)}")
        left, right = self.factors[0].make(**l_par).tensor, self.factors[1].make(**r_par).tensor
        left, right = torch.broadcast_tensors(left, right)
        return Elements(self, self.join(left, right))

    def describe(self, t: Tensor) -> list[str]:
        a, b = self.split(t.reshape(-1))
        return [f"({x}, {y})" for x, y in zip(self.factors[0].describe(a), self.factors[1].describe(b))]

    def generators(self) -> dict[str, Elements]:
        return _product_generators(self, self.factors)

    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor:
        return _act_factors(self.factors, self.split(g), x, out_size)


class ContinuousProduct(Group):
    """Product with at least one continuous factor; elements are float vectors of the factors' parameters."""

    is_finite = False
    element_dtype = torch.float32

    def __init__(self, left: Group, right: Group) -> None:
        self.factors: tuple[Group, Group] = (left, right)
        self.name = f"{left.name}*{right.name}"
        self.host_elements = left.host_elements and right.host_elements
        self._widths = [max(1, _width(f)) for f in self.factors]
        self.element_shape = (sum(self._widths),)
        self.is_exact = left.is_exact and right.is_exact
        self.action_tolerance = left.action_tolerance + right.action_tolerance  # errors add up
        self.param_names = left.param_names + right.param_names

    def _key(self) -> tuple[Any, ...]:
        return self.factors

    def split(self, t: Tensor) -> list[Tensor]:
        """Factor tensors of product elements (finite codes as int64)."""
        parts, start = [], 0
        for factor, width in zip(self.factors, self._widths):
            chunk = t[..., start : start + width]
            start += width
            parts.append(chunk.squeeze(-1).round().long() if factor.element_shape == () else chunk)
        return parts

    def join(self, *parts: Tensor) -> Tensor:
        cols = [p.unsqueeze(-1).float() if f.element_shape == () else p.float() for f, p in zip(self.factors, parts)]
        batch = torch.broadcast_shapes(*[c.shape[:-1] for c in cols])
        return torch.cat([c.expand(*batch, c.shape[-1]) for c in cols], dim=-1)

    def check_elements(self, t: Tensor) -> Tensor:
        if not t.is_floating_point() or t.dim() == 0 or t.shape[-1] != self.element_shape[0]:
            raise ValueError(
                f"elements of {self.name!r} are float tensors of shape (..., {self.element_shape[0]}), "
                f"got {t.dtype} {tuple(t.shape)}"
            )
        for factor, part in zip(self.factors, self.split(t)):
            factor.check_elements(part)
        return t

    @property
    def identity(self) -> Elements:
        return Elements(self, self.join(*[f.identity.tensor for f in self.factors]))

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return self.join(*[f._compose(x, y) for f, x, y in zip(self.factors, self.split(a), self.split(b))])

    def _inverse(self, a: Tensor) -> Tensor:
        return self.join(*[f._inverse(x) for f, x in zip(self.factors, self.split(a))])

    def _sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        return self.join(*[f._sample(n, generator, device) for f in self.factors])

    def equal(self, a: ElementLike, b: ElementLike) -> Tensor:
        ta, tb = self.unwrap(a), self.unwrap(b)
        eqs = [f.equal(x, y) for f, x, y in zip(self.factors, self.split(ta), self.split(tb.to(ta.device)))]
        return eqs[0] & eqs[1]

    def make(self, **params: Any) -> Elements:
        per_factor = [{k: v for k, v in params.items() if k in f.param_names} for f in self.factors]
        unknown = set(params) - set().union(*[set(p) for p in per_factor])
        if unknown:
            raise ValueError(f"{self.name!r} elements take {list(self.param_names)}, got {sorted(unknown)}")
        return Elements(self, self.join(*[f.make(**p).tensor for f, p in zip(self.factors, per_factor)]))

    def describe(self, t: Tensor) -> list[str]:
        names = [f.describe(p) for f, p in zip(self.factors, self.split(t.reshape(-1, self.element_shape[0])))]
        return [f"({x}, {y})" for x, y in zip(*names)]

    def generators(self) -> dict[str, Elements]:
        return _product_generators(self, self.factors)

    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor:
        return _act_factors(self.factors, self.split(g), x, out_size)


def _product_generators(product: Any, factors: Sequence[Group]) -> dict[str, Elements]:
    """Each factor's named generators, embedded with the identity in the other factors."""
    gens: dict[str, Elements] = {}
    for i, factor in enumerate(factors):
        for kind, g in factor.generators().items():
            parts = [f.identity.tensor for f in factors]
            parts[i] = g.tensor
            gens.setdefault(kind, Elements(product, product.join(*parts)))
    return gens


def _width(group: Group) -> int:
    return group.element_shape[0] if group.element_shape else 1


def direct_product(left: Group, right: Group) -> Group:
    """G × H: finite when both factors are, otherwise parameter vectors."""
    if isinstance(left, FiniteGroup) and isinstance(right, FiniteGroup):
        return FiniteProduct(left, right)
    return ContinuousProduct(left, right)
