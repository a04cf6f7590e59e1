"""The Group abstraction: batched group elements and their action rho_g on spatial maps.

Elements are tensors with a leading batch shape (integer codes for finite groups, parameter vectors for
continuous ones), so composing, inverting or acting with B per-sample elements is one tensor operation rather
than B Python objects. :class:`Elements` wraps such a tensor with its group so that ``g @ h`` and ``~g`` read like
escnn while staying batched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import Tensor

ElementLike = Union["Elements", Tensor]


class GroupLawError(ValueError):
    """A group or its action violates a law; ``law`` names it and ``counterexample`` shows the elements."""

    def __init__(self, group: str, law: str, counterexample: str, error: float | None = None) -> None:
        self.group, self.law, self.counterexample, self.error = group, law, counterexample, error
        err = "" if error is None else f" (error {error:.3g})"
        super().__init__(f"group {group!r} violates the {law} law{err}: {counterexample}")


class Elements:
    """A batch of elements of one group: ``tensor`` has shape ``batch_shape + group.element_shape``."""

    __slots__ = ("group", "tensor")
    __hash__ = None  # type: ignore[assignment]  # mutable tensor inside; equality is elementwise

    def __init__(self, group: Group, tensor: Tensor) -> None:
        self.group = group
        self.tensor = tensor

    @property
    def batch_shape(self) -> torch.Size:
        n = len(self.group.element_shape)
        return self.tensor.shape[: self.tensor.dim() - n] if n else self.tensor.shape

    def __len__(self) -> int:
        if len(self.batch_shape) == 0:
            raise TypeError("a single group element has no len()")
        return self.batch_shape[0]

    def __getitem__(self, index: Any) -> Elements:
        return Elements(self.group, self.tensor[index])

    def __matmul__(self, other: Elements) -> Elements:
        return self.group.compose(self, other)

    def __invert__(self) -> Elements:
        return self.group.inverse(self)

    def equals(self, other: Elements) -> Tensor:
        """Elementwise equality (within the group's tolerance for continuous groups)."""
        return self.group.equal(self, other)

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Elements) or other.group != self.group:
            return False
        return bool(self.group.equal(self, other).all())

    def to(self, device: torch.device | str) -> Elements:
        return Elements(self.group, self.tensor.to(device))

    def expand(self, n: int) -> Elements:
        """Broadcast a single element to a batch of ``n``."""
        if len(self.batch_shape) != 0:
            raise ValueError("expand() takes a single element")
        return Elements(self.group, self.tensor.unsqueeze(0).expand(n, *self.tensor.shape).clone())

    def __repr__(self) -> str:
        names = self.group.describe(self.tensor)
        body = names[0] if len(self.batch_shape) == 0 else "[" + ", ".join(names) + "]"
        return f"{self.group.name}{body if body.startswith('[') else '(' + body + ')'}"


class Group(ABC):
    """A symmetry group with a batched action on (B, C, H, W) maps.

    Subclasses define the element encoding (``element_shape``/``element_dtype``), composition, inverse,
    sampling and the spatial action. ``is_exact`` says whether the action is an exact index permutation (the D4
    family) or an interpolation whose error on smooth fields is bounded by ``action_tolerance``.
    """

    name: str = "group"
    element_shape: tuple[int, ...] = ()
    element_dtype: torch.dtype = torch.int64
    is_finite: bool = True
    is_exact: bool = True
    action_tolerance: float = 0.0
    #: True when ``_act_spatial`` takes the element tensor where it was drawn (usually the host) and moves only what
    #: it builds from it: reading elements to shape the output (odd quarter turns, grid sizes) then never waits for
    #: the device. False (the default for plug-ins): elements are moved to the map's device first.
    host_elements: bool = False
    #: names accepted by :meth:`make`
    param_names: tuple[str, ...] = ()

    # --- element encoding ----------------------------------------------------------------------------
    def wrap(self, tensor: Tensor) -> Elements:
        return Elements(self, self.check_elements(tensor))

    def unwrap(self, g: ElementLike) -> Tensor:
        """The raw tensor of ``g``, after checking that it belongs to this group."""
        if isinstance(g, Elements):
            if g.group != self:
                raise ValueError(f"expected elements of group {self.name!r}, got elements of {g.group.name!r}")
            return g.tensor
        if not isinstance(g, Tensor):
            raise ValueError(f"expected Elements or a tensor of {self.name!r} elements, got {type(g).__name__}")
        return self.check_elements(g)

    def _rewrap(self, like: ElementLike, tensor: Tensor) -> ElementLike:
        return Elements(self, tensor) if isinstance(like, Elements) else tensor

    @abstractmethod
    def check_elements(self, t: Tensor) -> Tensor:
        """Raise ValueError unless ``t`` encodes elements of this group; return it (possibly cast)."""

    @abstractmethod
    def describe(self, t: Tensor) -> list[str]:
        """Human-readable names of the elements in ``t`` (flattened batch)."""

    @abstractmethod
    def make(self, **params: Any) -> Elements:
        """Build elements from named parameters (broadcast), e.g. ``p4m.make(rot=1, flip=0)``."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and type(other) is type(self) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def _key(self) -> tuple[Any, ...]:
        return (self.name,)

    def __repr__(self) -> str:
        return f"<Group {self.name}>"

    # --- group structure -----------------------------------------------------------------------------
    @property
    @abstractmethod
    def identity(self) -> Elements:
        """The identity element (batch shape ())."""

    @abstractmethod
    def _compose(self, a: Tensor, b: Tensor) -> Tensor: ...

    @abstractmethod
    def _inverse(self, a: Tensor) -> Tensor: ...

    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor: ...

    @abstractmethod
    def equal(self, a: ElementLike, b: ElementLike) -> Tensor:
        """Elementwise equality as a bool tensor of the broadcast batch shape."""

    def compose(self, a: ElementLike, b: ElementLike) -> ElementLike:
        """a·b (apply b first, then a), broadcast over batch shapes; returns the type it was given."""
        ta, tb = self.unwrap(a), self.unwrap(b)
        return self._rewrap(a if isinstance(a, Elements) else b, self._compose(ta, tb.to(ta.device)))

    def inverse(self, a: ElementLike) -> ElementLike:
        return self._rewrap(a, self._inverse(self.unwrap(a)))

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Elements:
        """``n`` elements drawn from the group's sampling distribution (uniform for finite groups)."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return Elements(self, self._sample(n, generator, dev))

    @property
    def order(self) -> int | None:
        """|G| for finite groups, None for continuous ones."""
        return None

    def elements(self) -> Elements:
        raise TypeError(f"group {self.name!r} is continuous and has no finite element list")

    @abstractmethod
    def generators(self) -> dict[str, Elements]:
        """Named representative elements by kind ("rot90", "flip", "scale", ...), used by evaluation."""

    # --- action ------------------------------------------------------------------------------------------
    def act(
        self, x: Tensor, g: ElementLike, out_size: Sequence[int] | None = None, fibre: str = "trivial"
    ) -> Tensor:
        """rho_g x for x of shape (B, C, H, W) and B per-sample elements (or one, broadcast).

        ``out_size`` samples the moved map on another grid with the same centre and spacing (for scale groups a
        change of window; see :class:`ScaleGroup`). ``fibre="regular"`` also permutes channel blocks of size |G|.
        """
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected a (B, C, H, W) tensor, got shape {shape}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point map, got dtype {x.dtype}")
        t = self.unwrap(g)
        if not self.host_elements:
            t = t.to(x.device)
        n_elem = len(self.element_shape)
        if t.dim() == n_elem:  # one element for the whole batch
            t = t.unsqueeze(0).expand(x.shape[0], *t.shape)
        elif t.dim() != n_elem + 1 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"expected one element or a batch of {x.shape[0]} elements of {self.name!r}, "
                f"got element tensor of shape {tuple(t.shape)}"
            )
        if out_size is not None:
            out_size = (int(out_size[0]), int(out_size[1]))
        y = self._act_spatial(x, t, out_size)
        if fibre != "trivial":
            y = self.act_fibre(y, t, fibre)
        return y

    @abstractmethod
    def _act_spatial(self, x: Tensor, g: Tensor, out_size: tuple[int, int] | None) -> Tensor: ...

    def act_fibre(self, x: Tensor, g: Tensor, fibre: str) -> Tensor:
        raise ValueError(f"group {self.name!r} supports only the trivial fibre representation, got {fibre!r}")

    def representation(self, name: str) -> Callable[[ElementLike], Tensor]:
        """rho as a matrix-valued function (finite groups): ``G.representation("regular")(g)`` -> (..., n, n)."""
        raise ValueError(f"group {self.name!r} has no matrix representation {name!r}")
