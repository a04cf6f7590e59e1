"""Continuous groups: isotropic scale and planar rotations SO(2), acting by bilinear resampling.

Elements are float32 parameter vectors of shape (1,): the scale factor s > 0, or the angle in radians wrapped
to [-π, π). Their actions are interpolations and therefore approximate group actions: zooming in pushes
content off the grid, so rho(g)rho(h) = rho(gh) holds only where no content was lost, and to within the
interpolation error: ``verify_group`` on 32x32 smooth fields (Gaussian bumps, sigma 3.2 cells, central disk of
radius 8) measures at most about 4.5% of the peak for the composed laws; ``action_tolerance`` asserts 5%.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from equireg.groups.actions import affine_resample, rotation_matrix
from equireg.groups.base import ElementLike, Elements, Group


class _ParamGroup(Group):
    """Shared plumbing for one-parameter groups stored as (…, 1) float tensors."""

    is_finite = False
    is_exact = False
    host_elements = True
    element_shape = (1,)
    element_dtype = torch.float32
    param: str = "value"
    atol: float = 1e-5

    def check_elements(self, t: Tensor) -> Tensor:
        if not t.is_floating_point():
            raise ValueError(f"elements of {self.name!r} are float tensors of shape (..., 1), got dtype {t.dtype}")
        if t.dim() == 0 or t.shape[-1] != 1:
            raise ValueError(f"elements of {self.name!r} have shape (..., 1), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"elements of {self.name!r} must be finite")
        return t

    def make(self, **params: Any) -> Elements:
        unknown = set(params) - {self.param}
        if unknown:
            raise ValueError(f"{self.name!r} elements take {self.param}=, got {sorted(unknown)}")
        value = torch.as_tensor(params.get(self.param, self._neutral), dtype=torch.float32)
        return self.wrap(self._normalise(value.unsqueeze(-1)))

    _neutral: float = 0.0

    def _normalise(self, t: Tensor) -> Tensor:
        return t

    @property
    def identity(self) -> Elements:
        return Elements(self, torch.tensor([self._neutral], dtype=torch.float32))

    def describe(self, t: Tensor) -> list[str]:
        return [f"{self.param}={v:.4g}" for v in t.reshape(-1).tolist()]


class ScaleGroup(_ParamGroup):
    """Multiplicative group of isotropic scale factors; samples log-uniformly from [min_scale, max_scale].

    rho_s f(u) = f(u / s): content grows by s about the grid centre. With the default ``out_size`` the grid is
    kept (zoom); with ``out_size = round(s · size)`` the whole map is resampled onto the larger or smaller grid,
    which is how SER's token-aligned scale views relate their token maps.
    """

    name = "scale"
    param = "scale"
    param_names = ("scale",)
    _neutral = 1.0
    action_tolerance = 0.05
    atol = 1e-5

    def __init__(self, min_scale: float = 0.7, max_scale: float = 1.3) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"scale range needs 0 < min_scale <= max_scale, got ({min_scale}, {max_scale})")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def _key(self) -> tuple[Any, ...]:
        return (self.min_scale, self.max_scale)

    def check_elements(self, t: Tensor) -> Tensor:
        t = super().check_elements(t)
        if bool((t <= 0).any()):
            raise ValueError(f"elements of {self.name!r} are positive scale factors, got {t.min().item():.4g}")
        return t

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b

    def _inverse(self, a: Tensor) -> Tensor:
        return 1.0 / a

    def _sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        lo, hi = math.log(self.min_scale), math.log(self.max_scale)
        u = torch.rand(n, 1, generator=generator)
        return torch.exp(lo + (hi - lo) * u).to(device)

    def equal(self, a: ElementLike, b: ElementLike) -> Tensor:
        ta, tb = self.unwrap(a), self.unwrap(b)
        return (torch.log(ta) - torch.log(tb.to(ta.device))).abs().squeeze(-1) <= self.atol

    def generators(self) -> dict[str, Elements]:
        return {"scale": self.make(scale=self.max_scale)}

    def linear_part(self, g: Tensor) -> Tensor:
        return g.double().view(-1, 1, 1) * torch.eye(2, dtype=torch.float64, device=g.device)

    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor:
        return affine_resample(x, self.linear_part(g), out_size)


class SO2Group(_ParamGroup):
    """Planar rotations by any angle (radians, uniform sampling); quarter turns are the exact ones."""

    name = "so2"
    param = "angle"
    param_names = ("angle",)
    action_tolerance = 0.05

    def _normalise(self, t: Tensor) -> Tensor:
        return torch.remainder(t + math.pi, 2 * math.pi) - math.pi

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return self._normalise(a + b)

    def _inverse(self, a: Tensor) -> Tensor:
        return self._normalise(-a)

    def _sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        return ((torch.rand(n, 1, generator=generator) * 2 - 1) * math.pi).to(device)

    def equal(self, a: ElementLike, b: ElementLike) -> Tensor:
        ta, tb = self.unwrap(a), self.unwrap(b)
        return self._normalise(ta - tb.to(ta.device)).abs().squeeze(-1) <= self.atol

    def generators(self) -> dict[str, Elements]:
        return {"rot90": self.make(angle=math.pi / 2)}

    def linear_part(self, g: Tensor) -> Tensor:
        return rotation_matrix(g.double().squeeze(-1))

    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor:
        return affine_resample(x, self.linear_part(g), out_size)
