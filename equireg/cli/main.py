"""The ``equireg`` console script."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="equireg command line.")


def main() -> None:
    app()
