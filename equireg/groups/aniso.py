"""``p4m_aniso``: D4 on the grid followed by an axis-aligned (anisotropic) rescale, SER's transformation set.

SER's equivariant views relate their token maps by a D4 element and a resize of the whole grid to another
(usually non-square) size (methods.md §7.1). An element is the linear map A = S·D: first the D4 element D (exact
index permutation, flip then quarter turns, code ``k + 4·j`` as in ``p4m``), then S = diag(sx, sy) along the
width and height axes of the permuted grid. Because a quarter turn swaps the axes, the set is a semidirect product:
(S1 D1)(S2 D2) = S1 (D1 S2 D1⁻¹)(D1 D2), where D1 S2 D1⁻¹ is S2 with its axes swapped when D1 turns by an odd
number of quarter turns. Elements are float tensors ``[code, sy, sx]``.

The action follows :meth:`Group.act`: without ``out_size`` the grid is kept (content zooms about the centre,
zeros outside); with ``out_size = (sy · h, sx · w)`` the moved map is the whole grid resized to that size, which is
what SER's feature action does (bicubic, edges clamped, no antialias). The D4 part is exact; the rescale is an
interpolation, so the action laws hold within ``action_tolerance`` on smooth fields, as for ``scale``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from equireg.groups.actions import affine_resample, d4_permute
from equireg.groups.base import ElementLike, Elements, Group
from equireg.groups.dihedral import DihedralGroup


class D4AxisScaleGroup(Group):
    """D4 ⋉ positive axis scales; see the module docstring. Samples D4 uniformly and each axis scale
    log-uniformly from [min_scale, max_scale]."""

    name = "p4m_aniso"
    element_shape = (3,)
    element_dtype = torch.float32
    is_finite = False
    is_exact = False
    action_tolerance = 0.05
    param_names = ("rot", "flip", "sy", "sx")
    host_elements = True
    atol = 1e-5

    def __init__(self, min_scale: float = 0.7, max_scale: float = 1.3) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"scale range needs 0 < min_scale <= max_scale, got ({min_scale}, {max_scale})")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.d4 = DihedralGroup(4, reflections=True, name="p4m")

    def _key(self) -> tuple[Any, ...]:
        return (self.min_scale, self.max_scale)

    # --- encoding ---------------------------------------------------------------------------------------------
    def check_elements(self, t: Tensor) -> Tensor:
        if not t.is_floating_point() or t.dim() == 0 or t.shape[-1] != 3:
            raise ValueError(f"elements of {self.name!r} are float tensors [code, sy, sx] of shape (..., 3), "
                             f"got {tuple(t.shape)} {t.dtype}")
        code = t[..., 0]
        if bool(((code != code.round()) | (code < 0) | (code > 7)).any()):
            raise ValueError(f"the first entry of a {self.name!r} element is a D4 code 0..7")
        if not bool(torch.isfinite(t).all()) or bool((t[..., 1:] <= 0).any()):
            raise ValueError(f"the scales of a {self.name!r} element must be positive and finite")
        return t

    def split(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(D4 codes as int64, sy, sx)."""
        return t[..., 0].round().long(), t[..., 1], t[..., 2]

    def join(self, code: Tensor, sy: Tensor, sx: Tensor) -> Tensor:
        code, sy, sx = torch.broadcast_tensors(code.to(sy.device).float(), sy.float(), sx.float())
        return torch.stack([code, sy, sx], dim=-1)

    def make(self, rot: int | Tensor = 0, flip: int | Tensor = 0, sy: float | Tensor = 1.0,
             sx: float | Tensor = 1.0, **extra: Any) -> Elements:
        if extra:
            raise ValueError(f"{self.name!r} elements take rot=, flip=, sy=, sx=, got {sorted(extra)}")
        code = self.d4.make(rot=rot, flip=flip).tensor
        return self.wrap(self.join(code, torch.as_tensor(sy, dtype=torch.float32), torch.as_tensor(sx, dtype=torch.float32)))

    def describe(self, t: Tensor) -> list[str]:
        flat = t.reshape(-1, 3)
        code, sy, sx = self.split(flat)
        names = self.d4.describe(code)
        return [f"{n or 'e'}·s({y:.3g},{x:.3g})" for n, y, x in zip(names, sy.tolist(), sx.tolist())]

    @property
    def identity(self) -> Elements:
        return Elements(self, torch.tensor([0.0, 1.0, 1.0]))

    # --- structure --------------------------------------------------------------------------------------------
    @staticmethod
    def _odd_turn(code: Tensor) -> Tensor:
        return (code % 4) % 2 == 1

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        ca, ya, xa = self.split(a)
        cb, yb, xb = self.split(b)
        swap = self._odd_turn(ca)
        yb_, xb_ = torch.where(swap, xb, yb), torch.where(swap, yb, xb)
        return self.join(self.d4._compose(ca, cb.to(ca.device)), ya * yb_, xa * xb_)

    def _inverse(self, a: Tensor) -> Tensor:
        code, sy, sx = self.split(a)
        swap = self._odd_turn(code)  # D⁻¹ turns by the same parity as D
        return self.join(self.d4._inverse(code), torch.where(swap, 1 / sx, 1 / sy), torch.where(swap, 1 / sy, 1 / sx))

    def _sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        code = self.d4._sample(n, generator, torch.device("cpu"))
        lo, hi = math.log(self.min_scale), math.log(self.max_scale)
        scales = torch.exp(lo + (hi - lo) * torch.rand(n, 2, generator=generator))
        return self.join(code, scales[:, 0], scales[:, 1]).to(device)

    def equal(self, a: ElementLike, b: ElementLike) -> Tensor:
        ca, ya, xa = self.split(self.unwrap(a))
        cb, yb, xb = self.split(self.unwrap(b).to(ca.device))
        close = ((ya.log() - yb.log()).abs() <= self.atol) & ((xa.log() - xb.log()).abs() <= self.atol)
        return (ca == cb) & close

    def generators(self) -> dict[str, Elements]:
        return {"rot90": self.make(rot=1), "flip": self.make(flip=1),
                "aspect": self.make(sy=self.max_scale, sx=self.min_scale)}

    # --- action -----------------------------------------------------------------------------------------------
    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor:
        code, sy, sx = self.split(g)
        y = d4_permute(x, code % 4, code // 4)
        linear = torch.zeros(len(g), 2, 2, dtype=torch.float64, device=g.device)
        linear[:, 0, 0], linear[:, 1, 1] = sx.double(), sy.double()
        return affine_resample(y, linear, out_size)
