"""``equireg list``: the names in every registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import typer
from rich.console import Console

from equireg.cli.common import fail

console = Console()


def _listers() -> dict[str, Callable[[], list[str]]]:
    from equireg.augment import list_view_policies
    from equireg.backbones import list_backbones
    from equireg.config import list_recipes
    from equireg.data import list_datasets
    from equireg.equivariance import list_equiv_losses
    from equireg.evaluation import list_corruptions
    from equireg.groups import list_groups
    from equireg.objectives import list_objectives

    return {"groups": list_groups, "backbones": list_backbones, "objectives": list_objectives,
            "equiv-losses": list_equiv_losses, "view-policies": list_view_policies, "datasets": list_datasets,
            "corruptions": list_corruptions, "recipes": list_recipes}


KINDS = ("groups", "backbones", "objectives", "equiv-losses", "view-policies", "datasets", "corruptions", "recipes")


def list_command(
    kind: str = typer.Argument("all", help=f"one of: {', '.join(KINDS)}, all"),
    plugins: Optional[list[str]] = typer.Option(None, "--plugins", help="your plug-in modules to import first"),
) -> None:
    """List registered plug-ins (groups, backbones, objectives, equivariance losses, view policies, datasets, ...)."""
    from equireg.plugins import PluginError, import_plugins, plugin_names

    if kind != "all" and kind not in KINDS:
        fail(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}, all")
    try:
        import_plugins(plugin_names(plugins))
    except PluginError as exc:
        fail(str(exc))
    listers = _listers()
    for k in KINDS if kind == "all" else (kind,):
        console.print(f"[bold]{k}[/bold]: {', '.join(listers[k]())}")
