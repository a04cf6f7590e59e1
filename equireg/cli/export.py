"""``equireg export RUN --format timm --out FILE``: a run's online backbone as a timm checkpoint."""

from __future__ import annotations

import typer

from equireg.cli.common import fail


def export(
    run_dir: str = typer.Argument(..., metavar="RUN", help="a run directory (holds config.yaml and checkpoints/)"),
    out: str = typer.Option(..., "--out", help="output file: .safetensors (default choice) or .pth/.pt"),
    fmt: str = typer.Option("timm", "--format", help="export format: timm"),
) -> None:
    """Export the online backbone of RUN's latest checkpoint as a timm checkpoint, check that it reproduces
    equireg's embedding, and print the Python that loads it."""
    from equireg.config import ConfigError
    from equireg.export import ExportError, export_run

    try:
        result = export_run(run_dir, out, fmt)
    except (ExportError, ConfigError) as exc:
        fail(str(exc))
    meta = result.metadata
    typer.echo(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB): {meta['timm_model']} from "
               f"{run_dir} (split layer {meta['split_layer']}, [CLS] {meta['cls_position']}); the reloaded model "
               f"reproduces equireg's embedding (relative error {result.relative_error:.1e})")
    typer.echo("load it with:\n")
    typer.echo(result.snippet)
