"""Helpers shared by CLI commands: one way to report bad input (message + exit code 2)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error and exit with ``code`` (2 = bad input, as for usage errors)."""
    # soft_wrap: long paths and commands stay whole (copyable); escape: brackets in a message are not markup
    err_console.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)
