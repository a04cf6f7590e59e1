"""``equireg data``: generate datasets locally (``equireg data make rot3d --out DIR``)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from equireg.cli.common import fail

app = typer.Typer(no_args_is_help=True, help="Generate datasets locally.")
make_app = typer.Typer(no_args_is_help=True, help="Generate a dataset into a folder.")
app.add_typer(make_app, name="make")
console = Console()


class _Progress:
    """A rich bar per stage on a terminal; otherwise one line per stage at most every ``every`` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self.tty = sys.stdout.isatty()
        self.every = every
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        self._last: dict[str, float] = {}
        self._finished: set[str] = set()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.tty:
            self._rich(stage, done, total)
            return
        finished = done >= total
        due = time.monotonic() - self._last.get(stage, -math.inf) >= self.every
        if stage in self._finished or not (finished or due):
            return
        if finished:
            self._finished.add(stage)
        self._last[stage] = time.monotonic()
        typer.echo(f"{stage}: {done}/{total}")

    def _rich(self, stage: str, done: int, total: int) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description:7s}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console)
            self._bar.start()
        if stage not in self._tasks:
            self._tasks[stage] = self._bar.add_task(stage, total=total)
        self._bar.update(self._tasks[stage], completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@make_app.command("rot3d")
def make_rot3d_command(
    out: Path = typer.Option(..., "--out", help="folder to create (train/, test/, labels.npz, rot3d.json)"),
    objects: int = typer.Option(50, help="objects (classes) that pass the screen, taken in mesh-name order"),
    train_views: int = typer.Option(40, help="train images per object (uniform random rotations)"),
    test_views: int = typer.Option(10, help="test images per object, at other rotations"),
    size: int = typer.Option(64, help="image side in pixels"),
    color: str = typer.Option("fixed", help="object colour: 'fixed' (identity from shape alone) or 'random'"),
    seed: int = typer.Option(0, help="seed of the rotations (and of the colours with --color random)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT when it is a rot3d folder already"),
    workers: Optional[int] = typer.Option(None, help="render processes (default: cores, at most 4)"),
    meshes: Optional[Path] = typer.Option(None, help="folder of <name>/<name>.obj meshes to use instead of "
                                          "pybullet_data/random_urdfs"),
) -> None:
    """Render pybullet's procedural objects at uniform random 3D rotations, with exact labels (docs/rot3d.md)."""
    from equireg.data.rot3d import NotEnoughObjectsError, RendererUnavailableError, Rot3dOptions, make_rot3d

    if workers is not None and workers < 1:
        fail(f"--workers must be >= 1, got {workers}")
    options = Rot3dOptions(objects, train_views, test_views, size, color, seed)  # type: ignore[arg-type]
    progress = _Progress()
    try:
        summary = make_rot3d(out, options, overwrite=overwrite, workers=workers, mesh_dir=meshes, progress=progress)
    except (RendererUnavailableError, FileExistsError, FileNotFoundError, NotEnoughObjectsError, ValueError) as exc:
        progress.close()
        fail(str(exc))
    progress.close()
    counts = ", ".join(f"{n} {reason}" for reason, n in summary.skipped_counts().items())
    typer.echo(f"screened {summary.screened} meshes in {summary.screen_seconds:.1f} s: kept {len(summary.objects)}, "
               f"skipped {counts} (details in {summary.out / 'rot3d.json'})")
    typer.echo(f"rendered {summary.num_images} images in {summary.render_seconds:.1f} s "
               f"({summary.images_per_second:.0f} img/s, {summary.workers} workers) -> {summary.out}")
