"""Plug-ins from the user's own modules: ``--plugins my_module`` (or ``EQUIREG_PLUGINS=a,b``) imports them before
anything is built, so their ``@register_x`` decorators run; a run records them in its ``config.yaml`` (``plugins``),
so ``equireg eval`` on that run imports them again.

A name is a module importable from the current directory or ``PYTHONPATH`` (``my_package.plugins``) or a path to a
``.py`` file. Installed packages can instead declare entry points (see docs/plugins.md); those load on their own.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

ENV_VAR = "EQUIREG_PLUGINS"


class PluginError(ValueError):
    """A plug-in module could not be imported (bad input: the message names the module and the cause)."""


def plugin_names(explicit: Iterable[str] | None = None) -> list[str]:
    """The ``--plugins`` values followed by those of ``EQUIREG_PLUGINS`` (comma-separated), without repeats;
    ``.py`` paths made absolute so the record works from any directory."""
    names = [n.strip() for n in (explicit or []) if n.strip()]
    names += [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]
    names = [str(Path(n).expanduser().resolve()) if n.endswith(".py") else n for n in names]
    return list(dict.fromkeys(names))


def import_plugins(names: Iterable[str]) -> list[ModuleType]:
    """Import each plug-in module once (the current directory is searched too, as ``python -m`` would)."""
    modules = []
    for name in names:
        try:
            modules.append(_load_file(Path(name)) if name.endswith(".py") else _load_module(name))
        except PluginError:
            raise
        except Exception as exc:  # an error inside the user's module: report it, do not show our traceback
            raise PluginError(f"could not import plug-in module {name!r}: {type(exc).__name__}: {exc}") from None
    return modules


def _load_module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise PluginError(f"plug-in module {name!r} not found (looked in {cwd} and on sys.path); pass a module "
                              f"name importable from there or a path to a .py file") from None
        raise
    finally:
        if added:
            sys.path.remove(cwd)


def _load_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise PluginError(f"plug-in file {str(path)!r} does not exist")
    name = f"equireg_plugin_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
