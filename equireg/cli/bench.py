"""``equireg bench``: run a matrix of runs from one YAML spec, resumably, and summarise it."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Optional

import typer

from equireg.cli.common import fail
from equireg.config import ConfigError
from equireg.registry import UnknownNameError

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Benchmark matrices: methods x layers x objectives x seeds (x groups) from one YAML spec.\n\n"
        "A spec has: name; base (run-config keys shared by every cell, as in `equireg train -c`); methods (loss "
        "names such as none, ser, augself, equimod, essl, stl, or {label: {config overrides}}); layers "
        "(--equiv-layer values; the last layer is the coupled setting); objectives (moco, dino, barlow, simclr, "
        "or {name: {kwargs}}); seeds; groups (for losses on T_eq pairs, i.e. ser); evaluate (linear, robustness, "
        "equivariance); baseline (the method every row is paired with, default none). Shipped specs: cpu, gpu. Each "
        "cell writes cells/<id>/result.json when finished; re-running skips finished cells (adding seeds trains only "
        "the new ones) and resumes killed ones from their last checkpoint. Outputs: results.csv, summary.csv, "
        "results.md (mean ± 95% CI over seeds, paired differences to the baseline), paired_differences.png, "
        "layer_sweep.png, accuracy_vs_equivariance.png; `compare` pairs any two arms. See docs/bench.md."
    ),
)


@app.command("run")
def run(
    spec: str = typer.Argument(..., help="spec file, or a shipped spec name: cpu, gpu"),
    out_dir: Optional[str] = typer.Option(None, help="output folder (default: the spec's out_dir or runs/bench-<name>)"),
    only: Optional[str] = typer.Option(None, help="run only cells whose id matches this glob, e.g. 'moco-ser-*'"),
    max_minutes: Optional[float] = typer.Option(None, help="start no new cell after this many minutes"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the cells (and whether they are finished) only"),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="per-cell training progress bars"),
) -> None:
    """Train and evaluate every unfinished cell of SPEC, then write the table and plots."""
    from equireg.bench import expand_cells, load_spec, run_bench
    from equireg.bench.runner import RESULT_FILE

    try:
        parsed = load_spec(spec)
        cells = expand_cells(parsed)
    except (ConfigError, UnknownNameError) as exc:
        fail(str(exc))
    out = Path(out_dir or parsed.out_dir or f"runs/bench-{parsed.name}")
    selected = (lambda c: fnmatch.fnmatch(c.id, only)) if only else None
    if dry_run:
        for cell in cells:
            if selected is None or selected(cell):
                done = (out / "cells" / cell.id / RESULT_FILE).is_file()
                typer.echo(f"{cell.id:40s} {'finished' if done else 'to run'}")
        return
    try:
        summary = run_bench(parsed, out, only=selected, max_minutes=max_minutes, progress=progress,
                            log=lambda m: typer.echo(m))
    except (ConfigError, UnknownNameError) as exc:
        fail(str(exc))
    typer.echo(f"finished {len(summary.finished)}, skipped {len(summary.skipped)}, failed {len(summary.failed)}, "
               f"not started {len(summary.not_started)}; table: {out / 'results.md'}")
    if summary.failed:
        raise typer.Exit(1)


@app.command("report")
def report(out_dir: str = typer.Argument(..., help="a bench output folder")) -> None:
    """Rewrite results.csv, results.md and the plots from the finished cells in OUT_DIR."""
    from equireg.bench import write_reports

    if not (Path(out_dir) / "cells").is_dir():
        fail(f"{out_dir} holds no bench cells (no cells/ folder)")
    paths = write_reports(out_dir, title=Path(out_dir).name)
    typer.echo((Path(out_dir) / "results.md").read_text())
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("compare")
def compare(
    out_dir: str = typer.Argument(..., help="a bench output folder"),
    pairs: list[str] = typer.Argument(..., help="A:B pairs of arms, each METHOD or METHOD@LAYER, e.g. augself@3:augself@4"),
    out: Optional[str] = typer.Option(None, help="also write the markdown table to this file"),
) -> None:
    """Paired differences A − B (per seed, same budget) between any two arms of OUT_DIR, with 95% t-intervals."""
    from equireg.bench.contrast import Arm, ContrastError, contrast_table
    from equireg.bench.report import load_results, rows_from_results

    if not (Path(out_dir) / "cells").is_dir():
        fail(f"{out_dir} holds no bench cells (no cells/ folder)")
    try:
        parsed = []
        for pair in pairs:
            a, sep, b = pair.partition(":")
            if not sep:
                raise ContrastError(f"a pair is A:B (e.g. augself@3:augself@4), got {pair!r}")
            parsed.append((Arm.parse(a), Arm.parse(b)))
        table = contrast_table(rows_from_results(load_results(Path(out_dir))), parsed)
    except ContrastError as exc:
        fail(str(exc))
    typer.echo(table)
    if out:
        Path(out).write_text(table)
        typer.echo(f"wrote {out}")


@app.command("specs")
def specs() -> None:
    """List the shipped specs."""
    from equireg.bench.spec import SPEC_DIR, load_spec

    for path in sorted(SPEC_DIR.glob("*.yaml")):
        s = load_spec(path)
        typer.echo(f"{path.stem:6s} {s.description}")
