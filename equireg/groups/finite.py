"""Finite groups as integer codes with a precomputed Cayley table: composing B elements is one gather."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from equireg.groups.base import ElementLike, Elements, Group


class FiniteGroup(Group):
    """Elements are int64 codes 0..order-1; subclasses fill ``_table`` (Cayley) and ``_inv`` in ``__init__``."""

    is_finite = True
    element_shape: tuple[int, ...] = ()
    element_dtype = torch.int64

    _table: Tensor  # (n, n): code of a·b
    _inv: Tensor  # (n,)
    _identity_code: int = 0

    def __init__(self) -> None:
        self._device_cache: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._device_cache:
            self._device_cache[device] = (self._table.to(device), self._inv.to(device))
        return self._device_cache[device]

    @property
    def order(self) -> int:
        return int(self._table.shape[0])

    def check_elements(self, t: Tensor) -> Tensor:
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"elements of {self.name!r} are integer codes 0..{self.order - 1}, got dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.order):
            raise ValueError(
                f"elements of {self.name!r} are integer codes 0..{self.order - 1}, "
                f"got values in [{int(t.min())}, {int(t.max())}]"
            )
        return t.long()

    @property
    def identity(self) -> Elements:
        return Elements(self, torch.tensor(self._identity_code, dtype=torch.int64))

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        table, _ = self._tables(a.device)
        return table[a, b]

    def _inverse(self, a: Tensor) -> Tensor:
        _, inv = self._tables(a.device)
        return inv[a]

    def _sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        return torch.randint(0, self.order, (n,), generator=generator).to(device)

    def equal(self, a: ElementLike, b: ElementLike) -> Tensor:
        ta, tb = self.unwrap(a), self.unwrap(b)
        return ta == tb.to(ta.device)

    def elements(self) -> Elements:
        return Elements(self, torch.arange(self.order))

    def cayley_table(self) -> Tensor:
        return self._table.clone()

    # --- representations ------------------------------------------------------------------------------
    def regular_index(self, g: Tensor) -> Tensor:
        """Channel permutation of the regular representation: out[c] = in[index[c]] with index = g^-1·c."""
        table, inv = self._tables(g.device)
        return table[inv[g]]  # (..., n)

    def representation(self, name: str) -> Callable[[ElementLike], Tensor]:
        n = self.order
        if name == "trivial":
            return lambda g: torch.ones(*self.unwrap(g).shape, 1, 1)
        if name == "regular":

            def regular(g: ElementLike) -> Tensor:
                t = self.unwrap(g)
                src = self.regular_index(t)  # rho(g)[c, src[c]] = 1
                eye = torch.eye(n, device=t.device)
                return eye[src]

            return regular
        raise ValueError(f"unknown representation {name!r} of {self.name!r}; available: trivial, regular")

    def act_fibre(self, x: Tensor, g: Tensor, fibre: str) -> Tensor:
        """Permute the |G|-sized channel blocks of each sample (regular fibres); trivial is a no-op."""
        if fibre == "trivial":
            return x
        if fibre != "regular":
            raise ValueError(f"unknown fibre representation {fibre!r}; available: trivial, regular")
        b, c, h, w = x.shape
        n = self.order
        if c % n:
            raise ValueError(f"regular fibres of {self.name!r} need channels divisible by {n}, got {c}")
        src = self.regular_index(g).to(x.device, non_blocking=True)  # (B, n)
        blocks = x.reshape(b, c // n, n, h, w)
        index = src.view(b, 1, n, 1, 1).expand(b, c // n, n, h, w)
        return blocks.gather(2, index).reshape(b, c, h, w)

    @abstractmethod
    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor: ...

    def make(self, **params: Any) -> Elements:  # pragma: no cover - overridden where meaningful
        raise TypeError(f"group {self.name!r} takes no element parameters")
