"""The generic registry: registration, fnmatch listing, None-dropping factory, clear unknown-name errors."""

from __future__ import annotations

import pytest

from equireg.registry import Registry, UnknownNameError


def test_register_create_list() -> None:
    reg: Registry[dict] = Registry("widget")

    @reg.register("alpha")
    def make_alpha(size: int = 3) -> dict:
        return {"size": size}

    @reg.register()
    def beta() -> dict:
        return {}

    assert reg.names() == ["alpha", "beta"]
    assert reg.names("a*") == ["alpha"]
    assert reg.create("alpha", size=None) == {"size": 3}  # None falls back to the default
    assert reg.create("ALPHA", size=5) == {"size": 5}
    assert "beta" in reg and "gamma" not in reg


def test_unknown_name_lists_choices() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("one")(lambda: 1)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'two'.*one"):
        reg.create("two")
    with pytest.raises(ValueError):  # also a ValueError, for callers that catch input errors
        reg.get("two")


def test_resolver_and_hooks() -> None:
    seen: list[str] = []
    reg: Registry[int] = Registry("number", resolver=lambda n: (lambda: int(n[1:])) if n.startswith("n") else None)
    reg.add_hook(lambda name, fn: seen.append(name))
    reg.register("zero")(lambda: 0)
    assert reg.create("n42") == 42
    assert seen == ["zero"]


def test_overwrite_warns() -> None:
    reg: Registry[int] = Registry("number")
    reg.register("x")(lambda: 1)
    with pytest.warns(UserWarning, match="Overwriting"):
        reg.register("x")(lambda: 2)
