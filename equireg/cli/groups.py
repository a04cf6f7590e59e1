"""``equireg groups``: list the registered groups and check their laws."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from equireg.cli.common import fail
from equireg.groups import create_group, list_groups, verify_group

app = typer.Typer(no_args_is_help=True, help="Symmetry groups: list them, check their laws.")
console = Console()


@app.command("list")
def list_command() -> None:
    """List registered groups (c{N}, d{N} and products like p4m*scale are accepted too)."""
    table = Table(title="equireg groups")
    for col in ("name", "order", "action", "generators", "description"):
        table.add_column(col)
    from equireg.groups import GROUPS

    for name in list_groups():
        group = create_group(name)
        doc = (GROUPS.get(name).__doc__ or "").strip().splitlines()[0]
        action = "exact" if group.is_exact else f"interpolated (≤{group.action_tolerance:.0%})"
        table.add_row(name, str(group.order or "∞"), action, ", ".join(group.generators()), doc)
    console.print(table)
    console.print("Also: c{N} / d{N} for any N (interpolated unless N is 1, 2 or 4), and products such as p4m*scale.")


@app.command("check")
def check_command(
    name: str = typer.Argument(..., help="group name, e.g. p4m, c8, p4m*scale"),
    samples: int = typer.Option(16, min=1, help="samples for continuous or large groups"),
    seed: int = typer.Option(0, help="sampling seed"),
) -> None:
    """Run the group-law and representation checks and print a table; exit 1 if a law fails."""
    try:
        group = create_group(name)
    except ValueError as exc:
        fail(str(exc))
    results = verify_group(group, samples=samples, seed=seed, raise_on_failure=False)
    table = Table(title=f"laws of {group.name} (order {group.order or '∞'})")
    for col in ("law", "result", "max error", "tolerance", "counterexample"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.law,
            "[green]pass[/green]" if r.passed else "[red]FAIL[/red]",
            f"{r.error:.3g}",
            f"{r.tolerance:.3g}",
            r.counterexample,
        )
    console.print(table)
    if not all(r.passed for r in results):
        raise typer.Exit(1)
