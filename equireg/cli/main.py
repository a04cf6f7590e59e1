"""The ``equireg`` console script."""

from __future__ import annotations

import typer

from equireg import __version__
from equireg.cli import groups

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="equireg: invariant self-supervised learning with soft equivariance regularization.",
    pretty_exceptions_enable=False,
)
app.add_typer(groups.app, name="groups")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"equireg {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """equireg command line."""


def main() -> None:
    app()
