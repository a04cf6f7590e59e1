"""Helpers shared by CLI commands: one way to report bad input (message + exit code 2)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error and exit with ``code`` (2 = bad input, as for usage errors)."""
    err_console.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)  # one line, unwrapped
    raise typer.Exit(code)
