"""``equireg list``: the names in every registry."""

from __future__ import annotations

import typer
from rich.console import Console

from equireg.cli.common import fail

console = Console()
KINDS = ("groups", "backbones", "objectives", "equiv-losses", "datasets", "corruptions")


def _names(kind: str) -> list[str]:
    if kind == "groups":
        from equireg.groups import list_groups

        return list_groups()
    if kind == "backbones":
        from equireg.backbones import list_backbones

        return list_backbones()
    if kind == "objectives":
        from equireg.objectives import list_objectives

        return list_objectives()
    if kind == "equiv-losses":
        from equireg.equivariance import list_equiv_losses

        return list_equiv_losses()
    if kind == "datasets":
        from equireg.data import list_datasets

        return list_datasets()
    from equireg.evaluation import list_corruptions

    return list_corruptions()


def list_command(kind: str = typer.Argument("all", help=f"one of: {', '.join(KINDS)}, all")) -> None:
    """List registered plug-ins (groups, backbones, objectives, equivariance losses, datasets, corruptions)."""
    if kind != "all" and kind not in KINDS:
        fail(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}, all")
    for k in KINDS if kind == "all" else (kind,):
        console.print(f"[bold]{k}[/bold]: {', '.join(_names(k))}")
