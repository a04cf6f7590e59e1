"""``equireg eval``: linear probe, kNN, equivariance score and corruption robustness of a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from equireg.cli.common import fail
from equireg.config import ConfigError
from equireg.registry import UnknownNameError

app = typer.Typer(no_args_is_help=True, help="Evaluate a trained run (results also go to RUN_DIR/eval/*.json).")
console = Console()
RunArg = typer.Argument(..., help="run directory written by `equireg train`")


def _load(run_dir: Path):  # type: ignore[no-untyped-def]
    from equireg.pipeline import load_run

    try:
        return load_run(run_dir)
    except (ConfigError, ValueError, UnknownNameError) as exc:
        fail(str(exc))


@app.command("linear")
def linear(run_dir: Path = RunArg) -> None:
    """Linear classifier on frozen features: top-1 / top-5."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_linear

    console.print(render_table(evaluate_linear(_load(run_dir))))


@app.command("knn")
def knn(run_dir: Path = RunArg) -> None:
    """Temperature-weighted cosine k-NN on frozen features."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_knn

    console.print(render_table(evaluate_knn(_load(run_dir))))


@app.command("equivariance")
def equivariance(
    run_dir: Path = RunArg,
    group: Optional[str] = typer.Option(None, help="group whose generators are scored (default: p4m*scale)"),
    layer: Optional[int] = typer.Option(None, help="layer k (default: the run's equivariance layer)"),
    fixed: bool = typer.Option(False, "--fixed", help="score at the place shared by every run (ViT: final token "
                               "map; CNN: deepest map of at least 2x2), comparable across split layers"),
) -> None:
    """Mean cosine between rho_g f1(x) and f1(g.x) per element kind, and f(x)·f(g.x) at the embedding."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_equivariance

    run = _load(run_dir)
    try:
        result = evaluate_equivariance(run, group=group, layer="fixed" if fixed else layer)
    except ValueError as exc:
        fail(str(exc))
    console.print(render_table(result))


@app.command("robustness")
def robustness(run_dir: Path = RunArg) -> None:
    """Linear-probe accuracy under corruptions at severities 1-5, and the mean."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_robustness

    console.print(render_table(evaluate_robustness(_load(run_dir))))


def summarize(run_dir: Path, kinds: tuple[str, ...] = ("linear", "equivariance")) -> dict[str, object]:
    """Run the chosen evaluations and print one summary table (the demo's closing output)."""
    from equireg import pipeline
    from equireg.data.splits import load_splits

    run = _load(run_dir)
    splits = load_splits(run.cfg)
    results: dict[str, object] = {}
    if "linear" in kinds or "robustness" in kinds:
        results["linear"] = pipeline.evaluate_linear(run, splits)
    if "knn" in kinds:
        results["knn"] = pipeline.evaluate_knn(run, splits)
    if "equivariance" in kinds:
        results["equivariance"] = pipeline.evaluate_equivariance(run, splits)
        results["equivariance_fixed"] = pipeline.evaluate_equivariance(run, splits, layer="fixed")
    if "robustness" in kinds:
        results["robustness"] = pipeline.evaluate_robustness(run, splits, probe=results["linear"])
    table = Table(title=f"equireg summary: {run_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if "linear" in results:
        lin = results["linear"]
        table.add_row("linear probe top-1 (%)", f"{lin.top1:.2f}")  # type: ignore[attr-defined]
        table.add_row("linear probe top-5 (%)", f"{lin.top5:.2f}")  # type: ignore[attr-defined]
    if "knn" in results:
        table.add_row("k-NN top-1 (%)", f"{results['knn'].top1:.2f}")  # type: ignore[attr-defined]
    if "equivariance" in results:
        eq = results["equivariance"]
        for kind, score in eq.map_scores.items():  # type: ignore[attr-defined]
            table.add_row(f"equivariance @layer {eq.layer}: {kind}", f"{score:.3f}")  # type: ignore[attr-defined]
        for kind, score in eq.embedding_scores.items():  # type: ignore[attr-defined]
            table.add_row(f"invariance @embedding: {kind}", f"{score:.3f}")
        fixed = results["equivariance_fixed"]
        place = f"layer {fixed.fixed_layer}" if fixed.fixed_layer else "final map"  # type: ignore[attr-defined]
        for kind, score in fixed.map_scores.items():  # type: ignore[attr-defined]
            table.add_row(f"equivariance @fixed place ({place}): {kind}", f"{score:.3f}")
    if "robustness" in results:
        table.add_row("corruption accuracy, mean (%)", f"{results['robustness'].mean_corruption_accuracy:.2f}")  # type: ignore[attr-defined]
    console.print(table)
    return results
