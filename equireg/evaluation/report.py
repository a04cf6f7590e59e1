"""``rich`` tables for evaluation results, for the CLI and notebooks."""

from __future__ import annotations

from rich.table import Table

from equireg.evaluation.equivariance import EquivarianceResult
from equireg.evaluation.knn import KNNResult
from equireg.evaluation.linear_probe import LinearProbeResult
from equireg.evaluation.robustness import RobustnessResult

Result = LinearProbeResult | KNNResult | EquivarianceResult | RobustnessResult


def linear_probe_table(result: LinearProbeResult, title: str = "Linear probe") -> Table:
    table = Table(title=title)
    for col in ("top-1 %", "top-5 %", "train top-1 %", "train / test", "classes", "optimiser"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.top1:.2f}",
        f"{result.top5:.2f}",
        f"{result.train_top1:.2f}",
        f"{result.num_train} / {result.num_test}",
        str(result.num_classes),
        _optimiser_text(result),
    )
    return table


def _optimiser_text(result: LinearProbeResult) -> str:
    if result.optimizer == "lbfgs":  # lr is unused by L-BFGS (line search)
        return f"lbfgs (<= {result.epochs} it, wd {result.weight_decay:g})"
    return f"{result.optimizer} ({result.epochs} ep, lr {result.lr:g}, wd {result.weight_decay:g})"


def knn_table(result: KNNResult, title: str = "k-NN") -> Table:
    table = Table(title=title)
    for col in ("top-1 %", "top-5 %", "k", "T", "train / test"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.top1:.2f}",
        f"{result.top5:.2f}",
        str(result.k),
        f"{result.temperature:g}",
        f"{result.num_train} / {result.num_test}",
    )
    return table


def equivariance_table(result: EquivarianceResult, title: str = "Equivariance score (mean cosine)") -> Table:
    layer = "default" if result.layer is None else str(result.layer)
    table = Table(title=f"{title}, {result.num_images} images")
    table.add_column("element kind")
    table.add_column(f"layer-{layer} map", justify="right")
    table.add_column("embedding", justify="right")
    table.add_column("g . x size", justify="right")
    for kind, score in result.map_scores.items():
        emb = result.embedding_scores.get(kind)
        sizes = ", ".join("x".join(map(str, s)) for s in result.transformed_sizes.get(kind, []))
        table.add_row(kind, f"{score:.4f}", "-" if emb is None else f"{emb:.4f}", sizes)
    return table


def robustness_table(result: RobustnessResult, title: str = "Corruption robustness, top-1 %") -> Table:
    table = Table(title=f"{title} (clean {result.clean_top1:.2f})")
    table.add_column("corruption")
    for s in result.severities:
        table.add_column(f"s{s}", justify="right")
    table.add_column("mean", justify="right")
    for name in result.corruptions:
        cells = [f"{v:.2f}" for v in result.top1[name]]
        table.add_row(name, *cells, f"{result.mean_per_corruption[name]:.2f}")
    table.add_section()
    table.add_row("mean corruption accuracy", *[""] * len(result.severities), f"{result.mean_corruption_accuracy:.2f}")
    return table


def render_table(result: Result) -> Table:
    """The table for any evaluation result."""
    if isinstance(result, LinearProbeResult):
        return linear_probe_table(result)
    if isinstance(result, KNNResult):
        return knn_table(result)
    if isinstance(result, EquivarianceResult):
        return equivariance_table(result)
    if isinstance(result, RobustnessResult):
        return robustness_table(result)
    raise ValueError(f"no table for {type(result).__name__}; expected an evaluation result")
