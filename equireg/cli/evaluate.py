"""``equireg eval``: linear evaluation, kNN, equivariance score, corruption robustness, the ImageNet robustness
and transfer sets (-C, -P, -R, -Sketch, -V2) and the rot3d probes of a trained run, on the run's device (the GPU
when there is one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from equireg.cli.common import fail
from equireg.config import ConfigError
from equireg.registry import UnknownNameError

app = typer.Typer(no_args_is_help=True, help="Evaluate a trained run (results also go to RUN_DIR/eval/*.json).")
console = Console()
RunArg = typer.Argument(..., help="run directory written by `equireg train`")
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: the run's train.device; "
                         "auto = the GPU when there is one)")
DataRootOpt = typer.Option(..., "--data-root", help="the set's folder (see docs/evaluation.md for its layout)")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: the run's train.threads)")
AlexNetOpt = typer.Option(None, "--alexnet", help="JSON of AlexNet's error rates (ImageNet-C: per corruption, a list "
                          "of 5 severities or their mean; ImageNet-P: flip probability per perturbation), fractions")


def _load(run_dir: Path, device: str | None = None, threads: int | None = None):  # type: ignore[no-untyped-def]
    """The run's backbone on its evaluation device (``--device``, else the run's ``train.device``), with torch using
    ``threads`` CPU threads (else the run's ``train.threads``)."""
    import torch

    from equireg.pipeline import eval_device, load_run, run_settings

    try:
        cfg = run_settings(run_dir)
        threads = threads or cfg.train.threads
        if threads:
            torch.set_num_threads(threads)
        return load_run(run_dir, device=eval_device(cfg, device))
    except (ConfigError, ValueError, UnknownNameError) as exc:
        fail(str(exc))


def _splits(run: Any) -> Any:
    """The run's data splits, with one line naming the requested sizes the dataset could not give."""
    from equireg.data.splits import load_splits

    try:
        splits = load_splits(run.cfg)
    except (ConfigError, ValueError, UnknownNameError, FileNotFoundError) as exc:
        fail(str(exc))
    if splits.clamped:
        console.print("note: " + "; ".join(splits.clamped), soft_wrap=True)
    return splits


def _progress(message: str) -> None:
    console.print(message, highlight=False)


@app.command("linear")
def linear(
    run_dir: Path = RunArg,
    protocol: Optional[str] = typer.Option(None, help="probe (fit on embeddings) or paper (SGD heads on crops, lr "
                                           "sweep); default: the run's eval.linear_protocol"),
    device: Optional[str] = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
) -> None:
    """Linear classifier on frozen features: top-1 / top-5 (the head is saved for the transfer sets)."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_linear

    if protocol not in (None, "probe", "paper"):
        fail(f"--protocol must be 'probe' or 'paper', got {protocol!r}")
    run = _load(run_dir, device, threads)
    try:
        result = evaluate_linear(run, _splits(run), protocol=protocol, log=_progress)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(render_table(result))


@app.command("knn")
def knn(run_dir: Path = RunArg, device: Optional[str] = DeviceOpt, threads: Optional[int] = ThreadsOpt) -> None:
    """Temperature-weighted cosine k-NN on frozen features."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_knn

    run = _load(run_dir, device, threads)
    console.print(render_table(evaluate_knn(run, _splits(run))))


@app.command("equivariance")
def equivariance(
    run_dir: Path = RunArg,
    group: Optional[str] = typer.Option(None, help="group whose generators are scored (default: the run's group; "
                                        "p4m*scale for p4m)"),
    layer: Optional[int] = typer.Option(None, help="layer k (default: the run's equivariance layer)"),
    fixed: bool = typer.Option(False, "--fixed", help="score at the place shared by every run (ViT: final token "
                               "map; CNN: deepest map of at least 2x2), comparable across split layers"),
    center: bool = typer.Option(False, "--center", help="remove the batch-mean offset before the cosine (for maps "
                                "whose raw scores all sit near 1, such as ViT tokens); writes a -centered file"),
    device: Optional[str] = DeviceOpt,
    threads: Optional[int] = ThreadsOpt,
) -> None:
    """Mean cosine between rho_g f1(x) and f1(g.x) per element kind, and f(x)·f(g.x) at the embedding.

    Writes eval/equivariance.json at the run's own group and layer (eval/equivariance-fixed.json with --fixed), and
    eval/equivariance-<group>-L<k>.json (or -fixed) when --group or --layer is given, so training's scores are
    never overwritten."""
    from equireg.evaluation import render_table
    from equireg.pipeline import equivariance_result_name, evaluate_equivariance

    run = _load(run_dir, device, threads)
    place = "fixed" if fixed else layer
    try:
        result = evaluate_equivariance(run, _splits(run), group=group, layer=place, center=center)
    except ValueError as exc:
        fail(str(exc))
    console.print(render_table(result))
    console.print(f"wrote {run_dir / 'eval' / equivariance_result_name(run, group, place, center)}.json", soft_wrap=True)


@app.command("robustness")
def robustness(run_dir: Path = RunArg, device: Optional[str] = DeviceOpt,
               threads: Optional[int] = ThreadsOpt) -> None:  # fmt: skip
    """Linear-probe accuracy under on-the-fly corruptions at severities 1-5, and the mean."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_robustness

    run = _load(run_dir, device, threads)
    console.print(render_table(evaluate_robustness(run, _splits(run))))


def _alexnet(path: Optional[Path]) -> dict[str, object] | None:
    """The user's AlexNet reference numbers: a JSON mapping of names to fractions (or lists of fractions)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"--alexnet {path}: cannot read a JSON mapping ({exc})")
    values = [v for x in data.values() for v in (x if isinstance(x, list) else [x])] if isinstance(data, dict) else None
    if not values or not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in values):
        fail(f"--alexnet {path}: expected {{name: fraction or [fraction per severity]}} with fractions in (0, 1]")
    return data  # type: ignore[no-any-return]


def _transfer(name: str, run_dir: Path, data_root: Path, device: Optional[str], alexnet: Optional[Path] = None) -> None:
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_transfer

    reference = _alexnet(alexnet)
    run = _load(run_dir, device)
    try:
        result = evaluate_transfer(run, name, data_root, reference, log=_progress)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(render_table(result))


@app.command("imagenet-c")
def imagenet_c(run_dir: Path = RunArg, data_root: Path = DataRootOpt, alexnet: Optional[Path] = AlexNetOpt,
               device: Optional[str] = DeviceOpt) -> None:  # fmt: skip
    """ImageNet-C: top-1 per corruption and severity, mean top-1; mCE with --alexnet."""
    _transfer("imagenet-c", run_dir, data_root, device, alexnet)


@app.command("imagenet-p")
def imagenet_p(run_dir: Path = RunArg, data_root: Path = DataRootOpt, alexnet: Optional[Path] = AlexNetOpt,
               device: Optional[str] = DeviceOpt) -> None:  # fmt: skip
    """ImageNet-P (frames extracted from the videos): flip probability per perturbation; mFR with --alexnet."""
    _transfer("imagenet-p", run_dir, data_root, device, alexnet)


@app.command("imagenet-r")
def imagenet_r(run_dir: Path = RunArg, data_root: Path = DataRootOpt, device: Optional[str] = DeviceOpt) -> None:
    """ImageNet-R: top-1/5 with the 1000-way logits masked to its 200 classes."""
    _transfer("imagenet-r", run_dir, data_root, device)


@app.command("imagenet-sketch")
def imagenet_sketch(run_dir: Path = RunArg, data_root: Path = DataRootOpt, device: Optional[str] = DeviceOpt) -> None:
    """ImageNet-Sketch: top-1/5."""
    _transfer("imagenet-sketch", run_dir, data_root, device)


@app.command("imagenet-v2")
def imagenet_v2(run_dir: Path = RunArg, data_root: Path = DataRootOpt, device: Optional[str] = DeviceOpt) -> None:
    """ImageNet-V2 (numeric class folders 0..999): top-1/5."""
    _transfer("imagenet-v2", run_dir, data_root, device)


@app.command("rotation")
def rotation(
    run_dir: Path = RunArg,
    data_root: Optional[str] = typer.Option(None, help="rot3d folder (default: the run's data when it trained on rot3d)"),
    seed: Optional[int] = typer.Option(None, help="probe seed (default: the run's seed)"),
    layer: Optional[int] = typer.Option(None, help="layer whose pooled map is probed (default: the split layer)"),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Identity, absolute- and relative-rotation probes on a rot3d set (docs/rot3d.md)."""
    from equireg.evaluation import render_table
    from equireg.pipeline import evaluate_rotation

    run = _load(run_dir, device)
    try:
        result = evaluate_rotation(run, data_root, seed=seed, layer=layer)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(render_table(result))


def summarize(run_dir: Path, kinds: tuple[str, ...] = ("linear", "equivariance")) -> dict[str, object]:
    """Run the chosen evaluations and print one summary table (the demo's closing output)."""
    from equireg import pipeline

    run = _load(run_dir)
    console.print(f"evaluating on {next(run.backbone.parameters()).device}", highlight=False)
    splits = _splits(run)
    results: dict[str, object] = {}
    if "linear" in kinds or "robustness" in kinds:
        results["linear"] = pipeline.evaluate_linear(run, splits, log=_progress)
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
