"""One registry mechanism for every plug-in kind (groups, backbones, objectives, equivariance losses, datasets,
view policies).

Modelled on timm: ``@register_x("name")`` records a factory, ``create_x(name, **kwargs)`` builds it (``None``
kwargs are dropped so CLI defaults can pass through untouched), ``list_x(pattern)`` filters with fnmatch.
Third-party packages plug in through ``importlib.metadata`` entry points: each entry point of the registry's
group is loaded once, on first lookup; loading a module may register names with the decorator, and an entry
point that resolves to a callable is registered under the entry point's own name.

The factory contract (the same for every kind, see docs/plugins.md): a factory receives the user's options as
given (an option it does not take is an error the user sees), plus the framework's *context* values (e.g. the
image size, the split layer, the objective's name) only for parameters it names explicitly in its signature. A
factory that needs the image size declares ``img_size``; one that does not simply leaves it out. A ``**kwargs``
catch-all receives the user's options only, never context it did not ask for. Kinds whose plug-ins the framework
must inspect before building them (objectives, equivariance losses, view policies) register classes, and what the
framework reads is a declared class attribute of the base class, never a ``getattr`` default.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Factory = Callable[..., T]


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that no registry entry (or resolver) knows; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def named_parameters(factory: Callable[..., Any]) -> frozenset[str]:
    """Keyword parameters ``factory`` names explicitly (``**kwargs`` catch-alls excluded); follows ``partial``
    objects, ``__wrapped__`` and ``__signature__``, and a class's ``__init__``."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in params if p.kind in kinds)


def with_context(factory: Callable[..., Any], options: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments a factory gets: ``options`` (user's, None dropped) plus every non-None ``context``
    value whose name the factory declares and the user did not set."""
    kwargs = {k: v for k, v in options.items() if v is not None}
    wanted = named_parameters(factory)
    kwargs.update({k: v for k, v in context.items() if k in wanted and k not in kwargs and v is not None})
    return kwargs


class Registry(Generic[T]):
    """Name -> factory mapping for one plug-in kind.

    Args:
        kind: what is registered, used in messages ("group", "backbone", ...).
        entry_point_group: ``importlib.metadata`` group scanned once for third-party plug-ins.
        resolver: optional fallback for parametric names (e.g. ``c7`` or ``p4m*scale``); returns a factory
            or None when it does not understand the name.
        base: when given, only subclasses of ``base`` may be registered (kinds whose declared class attributes
            the framework reads before building them).
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        resolver: Callable[[str], Factory[T] | None] | None = None,
        base: type | None = None,
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._resolver = resolver
        self.base = base
        self._factories: dict[str, Factory[T]] = {}
        self._hooks: list[Callable[[str, Factory[T]], None]] = []
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str | None = None, *, override: bool = False) -> Callable[[Factory[T]], Factory[T]]:
        """Decorator recording ``fn`` under ``name`` (default: the function's name)."""

        def decorator(fn: Factory[T]) -> Factory[T]:
            if self.base is not None and not (isinstance(fn, type) and issubclass(fn, self.base)):
                raise TypeError(f"a {self.kind} plug-in must be a subclass of {self.base.__name__} (its declared "
                                f"attributes are read before it is built), got {fn!r}")
            key = (name or fn.__name__).lower()
            if key in self._factories and self._factories[key] is not fn and not override:
                warnings.warn(f"Overwriting {self.kind} {key!r} in the registry", stacklevel=2)
            self._factories[key] = fn
            for hook in self._hooks:
                hook(key, fn)
            return fn

        return decorator

    def add_hook(self, hook: Callable[[str, Factory[T]], None]) -> None:
        """Call ``hook(name, factory)`` on every later registration (e.g. law checks for groups)."""
        self._hooks.append(hook)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        assert self.entry_point_group is not None
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must not break the library; say so loudly
                warnings.warn(f"Could not load {self.kind} plug-in {ep.name!r} ({ep.value}): {exc}", stacklevel=2)
                continue
            if callable(obj) and ep.name.lower() not in self._factories:
                try:
                    self.register(ep.name)(obj)
                except TypeError as exc:
                    warnings.warn(f"Could not register {self.kind} plug-in {ep.name!r}: {exc}", stacklevel=2)

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching the fnmatch ``pattern``."""
        self._load_entry_points()
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern.lower()))

    def get(self, name: str) -> Factory[T]:
        """The factory for ``name``; unknown names raise :class:`UnknownNameError` listing the valid ones."""
        self._load_entry_points()
        key = name.strip().lower()
        if key in self._factories:
            return self._factories[key]
        if self._resolver is not None:
            factory = self._resolver(key)
            if factory is not None:
                return factory
        plural = self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + ("es" if self.kind.endswith("s") else "s")
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; registered {plural}: {', '.join(self.names()) or '(none)'}"
        )

    def create(self, name: str, context: Mapping[str, Any] | None = None, **kwargs: Any) -> T:
        """Build ``name`` with the user's ``kwargs`` (None dropped, so factory defaults apply) and the framework's
        ``context`` values the factory declares (see the module docstring)."""
        factory = self.get(name)
        return factory(**with_context(factory, kwargs, context or {}))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
