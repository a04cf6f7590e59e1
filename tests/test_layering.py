"""The package's layers import downward only: the building blocks (groups, backbones, objectives, losses, views,
data, evaluation) never reach up into the orchestration (recipe, engine, pipeline, bench, cli), and the engine
never into the pipeline or the front ends. Checked on the source, including imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import equireg

PACKAGE = Path(equireg.__file__).parent
BLOCKS = ("augment", "backbones", "data", "equivariance", "evaluation", "groups", "objectives")
ORCHESTRATION = ("recipe", "engine", "pipeline", "bench", "cli")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] == "equireg"}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _upward(layers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for layer in layers:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            found += [f"{path.relative_to(PACKAGE)} imports {m}" for m in sorted(_imports(path))
                      if _layer(m) in forbidden]
    return found


def test_building_blocks_never_import_the_orchestration() -> None:
    assert _upward(BLOCKS, ORCHESTRATION) == []


def test_the_engine_never_imports_the_pipeline_or_the_front_ends() -> None:
    assert _upward(("engine",), ("pipeline", "bench", "cli")) == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from equireg.pipeline import load_run\n")
    assert _imports(module) == {"equireg.pipeline"}
