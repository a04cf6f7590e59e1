"""The ``equireg`` console script."""

from __future__ import annotations

import typer

from equireg import __version__
from equireg.cli import bench, data, evaluate, export, groups, listing, train

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="equireg: invariant self-supervised learning with soft equivariance regularization.",
    pretty_exceptions_enable=False,
)
app.add_typer(groups.app, name="groups")
app.add_typer(evaluate.app, name="eval")
app.add_typer(train.config_app, name="config")
app.add_typer(bench.app, name="bench")
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.command("list")(listing.list_command)
app.command("export")(export.export)


@app.command("demo")
def demo(run_dir: str = typer.Option("runs/demo", help="where the demo run goes (replaced if it exists)")) -> None:
    """The main job on the embedded default data: SER (MoCo-v3 + p4m) on Fashion-MNIST, then a linear probe
    and the equivariance score, summarised in one table."""
    import shutil
    from pathlib import Path

    shutil.rmtree(Path(run_dir), ignore_errors=True)
    cfg = train.config_from_cli(None, None, run_dir=run_dir)
    train.run_training(cfg, resume=False, evaluate=True)


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
