"""Every dependency pyproject.toml declares is used by the package (a declared but unused one, as kornia was,
costs every user an install and a GPU machine a wheel to carry)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import equireg

ROOT = Path(equireg.__file__).parents[1]
# distribution name -> the import names that use it
IMPORT_NAMES = {"pyyaml": ("yaml",), "pillow": ("PIL",), "tensorboard": ("tensorboard", "torch.utils.tensorboard")}
NOT_IMPORTED = {"pytest", "hypothesis"}  # the test extra: used by tests/, not by the package


def _imported_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "equireg").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return names


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    names = {re.split(r"[<>=!\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}
    return names - {"equireg"} - NOT_IMPORTED


def _used(distribution: str, modules: set[str]) -> bool:
    wanted = IMPORT_NAMES.get(distribution, (distribution.replace("-", "_"),))
    return any(m == w or m.startswith(w + ".") for m in modules for w in wanted)


def test_every_declared_dependency_is_imported_by_the_package() -> None:
    modules = _imported_modules()
    assert [d for d in sorted(_declared()) if not _used(d, modules)] == []


def test_an_unused_dependency_would_be_reported() -> None:
    assert not _used("kornia", _imported_modules())
    assert _used("pyyaml", {"yaml"}) and _used("tensorboard", {"torch.utils.tensorboard"})
