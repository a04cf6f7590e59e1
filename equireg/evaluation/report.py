"""``rich`` tables for evaluation results, for the CLI and notebooks."""

from __future__ import annotations

from rich.table import Table

from equireg.evaluation.equivariance import EquivarianceResult
from equireg.evaluation.knn import KNNResult
from equireg.evaluation.linear_eval import LinearEvalResult
from equireg.evaluation.linear_probe import LinearProbeResult
from equireg.evaluation.robustness import RobustnessResult
from equireg.evaluation.rotation import RANDOM_GUESS_DEG, RotationProbeResult
from equireg.evaluation.transfer import CorruptionSetResult, FlipRateResult, TransferResult

Result = (
    LinearProbeResult | LinearEvalResult | KNNResult | EquivarianceResult | RobustnessResult | TransferResult
    | CorruptionSetResult | FlipRateResult | RotationProbeResult
)  # fmt: skip


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


def rotation_table(result: RotationProbeResult, title: str = "Rotation and identity probes (rot3d test views)") -> Table:
    table = Table(title=f"{title}: {result.num_objects} objects, {result.num_test} images, "
                        f"{result.num_test_pairs} pairs; random guess {RANDOM_GUESS_DEG:.1f}°")
    table.add_column("features")
    for col in ("dim", "identity top-1 %", "abs R²", "abs error °", "rel R²", "rel error °", "rel R² (linear)"):
        table.add_column(col, justify="right")
    for name, s in result.scores.items():
        dim = str(s.dim) if s.dim == s.probe_dim else f"{s.dim}→{s.probe_dim}"
        table.add_row(name, dim, f"{s.identity_top1:.1f}", f"{s.absolute_r2:.3f}", f"{s.absolute_geodesic_deg:.1f}",
                      f"{s.relative_r2:.3f}", f"{s.relative_geodesic_deg:.1f}", f"{s.relative_linear_r2:.3f}")
    return table


def linear_eval_table(result: LinearEvalResult, title: str = "Linear evaluation (SGD heads, lr sweep)") -> Table:
    table = Table(title=f"{title}: {result.features}, {result.epochs} epochs, batch {result.batch_size}")
    for col in ("lr x B/256", "top-1 %", "top-5 %"):
        table.add_column(col, justify="right")
    for lr, top1, top5 in zip(result.lrs, result.top1_per_lr, result.top5_per_lr):
        best = " (best)" if lr == result.best_lr else ""
        table.add_row(f"{lr:g}{best}", f"{top1:.2f}", f"{top5:.2f}")
    return table


def transfer_table(result: TransferResult) -> Table:
    table = Table(title=f"{result.name}" + (" (logits masked to the classes present)" if result.masked else ""))
    for col in ("top-1 %", "top-5 %", "images", "classes"):
        table.add_column(col, justify="right")
    table.add_row(f"{result.top1:.2f}", f"{result.top5:.2f}", str(result.num_images), str(result.num_classes))
    return table


def corruption_set_table(result: CorruptionSetResult) -> Table:
    mce = "" if result.mce is None else f", mCE {result.mce:.2f}%"
    table = Table(title=f"ImageNet-C top-1 % (mean {result.mean_top1:.2f}{mce})")
    table.add_column("corruption")
    for s in range(1, 6):
        table.add_column(f"s{s}", justify="right")
    table.add_column("CE %", justify="right")
    for name, row in result.top1.items():
        cells = dict(zip(result.severities[name], row))
        ce = (result.corruption_error or {}).get(name)
        table.add_row(name, *[f"{cells[s]:.2f}" if s in cells else "-" for s in range(1, 6)],
                      "-" if ce is None else f"{ce:.2f}")  # fmt: skip
    return table


def flip_rate_table(result: FlipRateResult) -> Table:
    mfr = "" if result.mfr is None else f", mFR {result.mfr:.2f}%"
    table = Table(title=f"ImageNet-P flip probability % (mean {result.mean_flip_probability:.2f}{mfr})")
    for col in ("perturbation", "flip prob. %", "FR %", "sequences"):
        table.add_column(col, justify="right")
    for name, fp in result.flip_probability.items():
        fr = (result.flip_rate or {}).get(name)
        table.add_row(name, f"{fp:.2f}", "-" if fr is None else f"{fr:.2f}", str(result.num_sequences[name]))
    return table


_TABLES = (
    (LinearEvalResult, linear_eval_table), (TransferResult, transfer_table),
    (CorruptionSetResult, corruption_set_table), (FlipRateResult, flip_rate_table),
    (RotationProbeResult, rotation_table),
)  # fmt: skip


def render_table(result: Result) -> Table:
    """The table for any evaluation result."""
    for kind, make in _TABLES:
        if isinstance(result, kind):
            return make(result)  # type: ignore[operator]
    if isinstance(result, LinearProbeResult):
        return linear_probe_table(result)
    if isinstance(result, KNNResult):
        return knn_table(result)
    if isinstance(result, EquivarianceResult):
        return equivariance_table(result)
    if isinstance(result, RobustnessResult):
        return robustness_table(result)
    raise ValueError(f"no table for {type(result).__name__}; expected an evaluation result")
