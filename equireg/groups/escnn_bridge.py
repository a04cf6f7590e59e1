"""Wrap escnn groups (cyclic, dihedral, SO(2)) as equireg Groups; needs the ``equireg[escnn]`` extra.

escnn is used only when the wrapper is built: the Cayley table is read from escnn's own composition once,
and elements convert to and from escnn ``GroupElement`` objects for interoperability. Composition, sampling
and the action stay batched torch code, because escnn's ``transform`` detaches gradients and round-trips
through NumPy (it must never sit in a training step). Geometric conventions follow escnn's
``gspaces.flipRot2dOnR2(N)`` (mirror axis pi/2): the mirror is ``torch.flip(x, dims=(-1,))``.
"""

from __future__ import annotations

from typing import Any

import torch

from equireg.groups.base import Elements, Group
from equireg.groups.continuous import SO2Group
from equireg.groups.dihedral import DihedralGroup


def import_escnn() -> Any:
    """Import escnn with the known incompatibility patched (scikit-learn's randomized_svd rejects np.matrix)."""
    try:
        import escnn
        import escnn.group._numerical as numerical
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the escnn bridge needs the optional extra: pip install 'equireg[escnn]'") from exc
    numerical.randomized_svd = None  # escnn falls back to scipy's SVD
    return escnn


class EscnnFiniteGroup(DihedralGroup):
    """An escnn ``CyclicGroup``/``DihedralGroup`` with its Cayley table taken from escnn's composition."""

    def __init__(self, escnn_group: Any) -> None:
        kind = type(escnn_group).__name__
        if kind not in ("CyclicGroup", "DihedralGroup"):
            raise ValueError(f"expected an escnn CyclicGroup or DihedralGroup, got {kind}")
        reflections = kind == "DihedralGroup"
        n = escnn_group.order() // (2 if reflections else 1)
        super().__init__(n, reflections=reflections, name=f"escnn:{escnn_group.name}")
        self.escnn_group = escnn_group
        self._escnn_elements = list(escnn_group.elements)
        codes = [self._code_of(e) for e in self._escnn_elements]
        lookup = {c: i for i, c in enumerate(codes)}
        size = len(codes)
        table = torch.empty(size, size, dtype=torch.int64)
        for a, ea in enumerate(self._escnn_elements):
            for b, eb in enumerate(self._escnn_elements):
                table[codes[a], codes[b]] = codes[lookup[self._code_of(ea @ eb)]]
        self._table = table
        self._inv = torch.tensor([self._code_of(~self._escnn_elements[lookup[c]]) for c in range(size)])

    def _code_of(self, element: Any) -> int:
        value = element.to("int")
        flip, rot = value if isinstance(value, tuple) else (0, value)
        return int(rot) + self.n_rot * int(flip)

    def to_escnn(self, g: Elements | torch.Tensor) -> list[Any]:
        """escnn GroupElements for (a batch of) codes."""
        codes = self.unwrap(g).reshape(-1).tolist()
        by_code = {self._code_of(e): e for e in self._escnn_elements}
        return [by_code[c] for c in codes]

    def from_escnn(self, elements: list[Any]) -> Elements:
        return Elements(self, torch.tensor([self._code_of(e) for e in elements], dtype=torch.int64))


class EscnnSO2Group(SO2Group):
    """escnn's SO(2) as a continuous group of angles, sampled uniformly by torch."""

    def __init__(self, escnn_group: Any) -> None:
        if type(escnn_group).__name__ != "SO2":
            raise ValueError(f"expected an escnn SO2 group, got {type(escnn_group).__name__}")
        self.escnn_group = escnn_group
        self.name = "escnn:SO(2)"

    def to_escnn(self, g: Elements | torch.Tensor) -> list[Any]:
        angles = self.unwrap(g).reshape(-1).tolist()
        return [self.escnn_group.element(a, "radians") for a in angles]

    def from_escnn(self, elements: list[Any]) -> Elements:
        return self.make(angle=torch.tensor([float(e.to("radians")) for e in elements]))


def from_escnn(escnn_group: Any) -> Group:
    """Wrap an escnn group: ``from_escnn(escnn.group.dihedral_group(4))`` behaves like ``create_group("p4m")``."""
    import_escnn()
    if type(escnn_group).__name__ == "SO2":
        return EscnnSO2Group(escnn_group)
    return EscnnFiniteGroup(escnn_group)
