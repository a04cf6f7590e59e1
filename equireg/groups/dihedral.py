"""Planar point groups C_N (rotations) and D_N (rotations and mirrors) acting on the pixel grid.

Element r^k f^j (mirror first, then rotate by 2πk/N) has code ``k + N·j``. For N in {1, 2, 4} the action is an
exact index permutation; for other N the rotations are bilinear resampling (zeros outside the grid), which is
only approximately a group action, and grid corners are lost. Measured with ``verify_group`` on 32x32 smooth
fields (Gaussian bumps, sigma 3.2 cells) inside the central disk of radius 8 cells: one bicubic resampling errs
by about 1.1% of the peak, the composed action laws by at most about 4.5%; ``action_tolerance`` asserts 5%.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from equireg.groups.actions import MIRROR, affine_resample, d4_permute, rotation_matrix
from equireg.groups.base import Elements
from equireg.groups.finite import FiniteGroup

EXACT_ORDERS = (1, 2, 4)


class DihedralGroup(FiniteGroup):
    """D_N (``reflections=True``) or C_N (``reflections=False``) on the grid; see module docstring."""

    param_names = ("rot", "flip")
    host_elements = True

    def __init__(self, n: int, reflections: bool = True, name: str | None = None) -> None:
        super().__init__()
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"the rotation order N must be a positive integer, got {n!r}")
        self.n_rot = n
        self.reflections = reflections
        self.name = name or (f"d{n}" if reflections else f"c{n}")
        self.is_exact = n in EXACT_ORDERS
        self.action_tolerance = 0.0 if self.is_exact else 0.05
        size = n * (2 if reflections else 1)
        k = torch.arange(size) % n
        j = torch.arange(size) // n
        # r^k1 f^j1 · r^k2 f^j2 = r^(k1 + (-1)^j1 k2) f^(j1 xor j2)
        sign = 1 - 2 * j.view(-1, 1)
        self._table = ((k.view(-1, 1) + sign * k.view(1, -1)) % n) + n * (j.view(-1, 1) ^ j.view(1, -1))
        self._inv = torch.where(j == 1, torch.arange(size), (-k) % n)

    def _key(self) -> tuple[Any, ...]:
        return (self.n_rot, self.reflections)

    def split_codes(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """(rotation steps k, mirror bit j) of codes."""
        return g % self.n_rot, g // self.n_rot

    def make(self, rot: int | Tensor = 0, flip: int | Tensor = 0, **extra: Any) -> Elements:
        if extra:
            raise ValueError(f"{self.name!r} elements take rot= and flip=, got {sorted(extra)}")
        rot_t, flip_t = torch.as_tensor(rot).long(), torch.as_tensor(flip).long()
        if not self.reflections and bool((flip_t != 0).any()):
            raise ValueError(f"{self.name!r} has no reflections; flip must be 0")
        rot_t, flip_t = torch.broadcast_tensors(rot_t, flip_t)
        return Elements(self, (rot_t % self.n_rot) + self.n_rot * (flip_t % 2))

    def describe(self, t: Tensor) -> list[str]:
        k, j = self.split_codes(t.reshape(-1))
        out = []
        for ki, ji in zip(k.tolist(), j.tolist()):
            deg = 360 * ki / self.n_rot
            rot = "e" if ki == 0 and ji == 0 else (f"r{deg:g}" if ki else "")
            out.append((rot + ("·" if rot else "") + "m") if ji else rot)
        return out

    def generators(self) -> dict[str, Elements]:
        gens: dict[str, Elements] = {}
        if self.n_rot == 4:
            gens["rot90"] = self.make(rot=1)
        elif self.n_rot > 1:
            gens[f"rot{360 / self.n_rot:g}"] = self.make(rot=1)
        if self.reflections:
            gens["flip"] = self.make(flip=1)
        return gens

    def linear_part(self, g: Tensor) -> Tensor:
        """(B, 2, 2) matrices R^k M^j in grid coordinates (see equireg.groups.actions)."""
        k, j = self.split_codes(g)
        rot = rotation_matrix(k.double() * (2 * math.pi / self.n_rot))
        mirror = torch.where(j.view(-1, 1, 1).bool(), MIRROR.double().to(g.device), torch.eye(2, dtype=torch.float64, device=g.device))
        return rot @ mirror

    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor:
        if self.is_exact:
            k, j = self.split_codes(g)
            y = d4_permute(x, k * (4 // self.n_rot), j)
            if out_size is not None and tuple(y.shape[-2:]) != out_size:
                raise ValueError(
                    f"{self.name!r} keeps the grid ({tuple(y.shape[-2:])}); out_size {out_size} needs a scale factor"
                )
            return y
        return affine_resample(x, self.linear_part(g), out_size)
