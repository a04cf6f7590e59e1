"""``make_rot3d``: screen the meshes, draw the rotations, render the views and write the rot3d folder.

The folder is written next to its destination under a temporary name and renamed into place only when complete,
so an interrupted or failed run leaves nothing behind, and ``overwrite`` swaps the old set for the new one at
the end. Rendering runs in worker processes (each holds its own pybullet DIRECT client); the images do not
depend on the number of workers: every rotation is drawn from ``(seed, object name, split)`` alone.
"""

from __future__ import annotations

import colorsys
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from equireg.data.rot3d.mesh import MeshFrame
from equireg.data.rot3d.render import Camera, Renderer, import_pybullet
from equireg.data.rot3d.rotations import quaternions_to_matrices, random_quaternions
from equireg.data.rot3d.screen import SCREEN_COLOR, SKIP_REASONS, ScreenConfig, ScreenResult, _name_key, screen_mesh

FORMAT_VERSION = 1
MARKER = "rot3d.json"
LABELS = "labels.npz"
CONTACT_SHEET = "contact_sheet.png"
SPLITS = ("train", "test")
FIXED_COLOR = SCREEN_COLOR
ProgressFn = Callable[[str, int, int], None]


class NotEnoughObjectsError(ValueError):
    """Fewer meshes pass the screen than were requested; the message says how many do."""


@dataclass(frozen=True)
class Rot3dOptions:
    """What to generate: ``objects`` meshes, each at ``train_views`` + ``test_views`` uniform random rotations."""

    objects: int = 50
    train_views: int = 40
    test_views: int = 10
    size: int = 64
    color: Literal["fixed", "random"] = "fixed"
    seed: int = 0

    def validate(self) -> None:
        if self.objects < 1 or self.train_views < 1 or self.test_views < 1:
            raise ValueError("--objects, --train-views and --test-views must be >= 1")
        if not 16 <= self.size <= 1024:
            raise ValueError(f"--size must be between 16 and 1024 pixels, got {self.size}")
        if self.color not in ("fixed", "random"):
            raise ValueError(f"--color must be 'fixed' or 'random', got {self.color!r}")


@dataclass
class Rot3dSummary:
    """What ``make_rot3d`` did: the kept objects, the skipped meshes per reason and the timings."""

    out: Path
    objects: list[str]
    num_images: int
    screened: int
    skipped: dict[str, list[dict[str, str]]]
    screen_seconds: float
    render_seconds: float
    workers: int

    @property
    def images_per_second(self) -> float:
        return self.num_images / max(self.render_seconds, 1e-9)

    def skipped_counts(self) -> dict[str, int]:
        return {reason: len(self.skipped.get(reason, [])) for reason in SKIP_REASONS}


@dataclass(frozen=True)
class _RenderJob:
    index: int
    name: str
    obj_path: str
    frame: MeshFrame
    color: tuple[float, float, float]
    size: int
    quaternions: dict[str, np.ndarray] = field(repr=False)
    out: str


def default_mesh_dir() -> Path:
    """``pybullet_data/random_urdfs`` inside the pybullet wheel (about 1,000 procedural objects, zlib licence)."""
    import_pybullet()
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / "random_urdfs"


def mesh_sources(mesh_dir: str | Path) -> list[tuple[str, Path]]:
    """``(name, obj path)`` of every ``<name>/<name>.obj`` under ``mesh_dir``, sorted by name."""
    root = Path(mesh_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"mesh folder {root} does not exist")
    found = [(d.name, d / f"{d.name}.obj") for d in sorted(root.iterdir()) if (d / f"{d.name}.obj").is_file()]
    if not found:
        raise FileNotFoundError(f"no meshes <name>/<name>.obj under {root}")
    return found


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def make_rot3d(
    out: str | Path,
    options: Rot3dOptions = Rot3dOptions(),
    *,
    overwrite: bool = False,
    workers: int | None = None,
    mesh_dir: str | Path | None = None,
    screen: ScreenConfig = ScreenConfig(),
    camera: Camera = Camera(),
    progress: ProgressFn | None = None,
) -> Rot3dSummary:
    """Generate a rot3d set in ``out`` (see docs/rot3d.md for the layout and conventions).

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is off, or it is not a rot3d folder.
        NotEnoughObjectsError: fewer meshes pass the screen than ``options.objects``.
        RendererUnavailableError: pybullet is not installed.
    """
    options.validate()
    out = Path(out).expanduser()
    check_destination(out, overwrite)
    import_pybullet()
    sources = mesh_sources(mesh_dir if mesh_dir is not None else default_mesh_dir())
    workers = workers or default_workers()
    with _Workers(workers, camera) as pool:
        t0 = time.perf_counter()
        kept, results = _screen(pool, sources, options.objects, screen, progress)
        t1 = time.perf_counter()
        partial = out.parent / f".{out.name}.partial-{os.getpid()}"
        try:
            jobs = _render_jobs(kept, options, partial)
            partial.mkdir(parents=True)
            _render(pool, jobs, progress)
            render_seconds = time.perf_counter() - t1
            summary = Rot3dSummary(out, [r.name for r in kept], len(jobs) * (options.train_views + options.test_views),
                                   len(results), _skipped(results), t1 - t0, render_seconds, workers)
            _write_labels(partial, jobs)
            _write_metadata(partial, options, summary, screen, camera)
            write_contact_sheet(partial, [j.name for j in jobs])
            if out.exists():
                shutil.rmtree(out)
            os.replace(partial, out)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return summary


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite``; even then only an empty folder or a rot3d set is replaced."""
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
        raise FileExistsError(f"{out} exists and is not a rot3d folder (no {MARKER}); refusing to replace it")


def _screen(
    pool: _Workers, sources: list[tuple[str, Path]], wanted: int, config: ScreenConfig, progress: ProgressFn | None
) -> tuple[list[ScreenResult], list[ScreenResult]]:
    """Screen meshes in name order until ``wanted`` pass; returns (kept, every result so far).

    Meshes go to the workers in small batches, so no worker is still screening once enough have passed.
    """
    kept: list[ScreenResult] = []
    results: list[ScreenResult] = []
    tasks = [(name, str(path), config) for name, path in sources]
    while len(kept) < wanted and len(results) < len(tasks):
        batch = tasks[len(results) : len(results) + max(4 * pool.n, 2 * (wanted - len(kept)))]
        for result in pool.imap(_screen_task, batch):
            results.append(result)
            if result.kept:
                kept.append(result)
                if progress and len(kept) <= wanted:
                    progress("screen", len(kept), wanted)
    if len(kept) >= wanted:  # report only up to the last mesh used, whatever the batch size was
        last = results.index(kept[wanted - 1])
        return kept[:wanted], results[: last + 1]
    counts = ", ".join(f"{r} {n}" for r, n in _counts(results).items() if n)
    raise NotEnoughObjectsError(
        f"asked for {wanted} objects but only {len(kept)} of {len(sources)} meshes pass the screen "
        f"(skipped: {counts or 'none'}); use --objects {len(kept)} or fewer"
    )


def _counts(results: Iterable[ScreenResult]) -> dict[str, int]:
    reasons = [r.reason for r in results]
    return {reason: reasons.count(reason) for reason in SKIP_REASONS}


def _skipped(results: list[ScreenResult]) -> dict[str, list[dict[str, str]]]:
    return {reason: [{"name": r.name, "detail": r.detail} for r in results if r.reason == reason]
            for reason in SKIP_REASONS}


def object_color(name: str, color: str, seed: int) -> tuple[float, float, float]:
    """The fixed colour, or a random saturated hue per object drawn from ``(seed, name)``."""
    if color == "fixed":
        return FIXED_COLOR
    hue = float(np.random.default_rng([seed, _name_key(name), 2]).random())
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    return (r, g, b)


def draw_rotations(name: str, split: str, count: int, seed: int) -> np.ndarray:
    """``count`` uniform rotations (quaternions) of one object and split, from ``(seed, name, split)`` alone."""
    rng = np.random.default_rng([seed, _name_key(name), SPLITS.index(split)])
    return random_quaternions(count, rng)


def _render_jobs(kept: list[ScreenResult], options: Rot3dOptions, out: Path) -> list[_RenderJob]:
    views = {"train": options.train_views, "test": options.test_views}
    return [
        _RenderJob(
            index=i, name=r.name, obj_path=r.path, frame=r.frame, size=options.size,  # type: ignore[arg-type]
            color=object_color(r.name, options.color, options.seed), out=str(out),
            quaternions={s: draw_rotations(r.name, s, n, options.seed) for s, n in views.items()},
        )
        for i, r in enumerate(kept)
    ]


def image_path(split: str, name: str, view: int) -> str:
    """Path of one image relative to the set's folder."""
    return f"{split}/{name}/{view:04d}.png"


def _render(pool: _Workers, jobs: list[_RenderJob], progress: ProgressFn | None) -> None:
    total = sum(sum(len(q) for q in j.quaternions.values()) for j in jobs)
    done = 0
    for count in pool.imap_unordered(_render_task, jobs):
        done += count
        if progress:
            progress("render", done, total)


def _write_labels(folder: Path, jobs: list[_RenderJob]) -> None:
    """One ``labels.npz`` (plain arrays, loadable with ``allow_pickle=False``), rows in (split, object, view) order."""
    rows = [(s, j, v, q) for s in SPLITS for j in jobs for v, q in enumerate(j.quaternions[s])]
    quats = np.stack([q for *_, q in rows])
    np.savez_compressed(
        folder / LABELS,
        path=np.array([image_path(s, j.name, v) for s, j, v, _ in rows]),
        split=np.array([s for s, *_ in rows]),
        object=np.array([j.index for _, j, _, _ in rows], dtype=np.int64),
        view=np.array([v for _, _, v, _ in rows], dtype=np.int64),
        quaternion=quats,
        rotation=quaternions_to_matrices(quats),
        object_names=np.array([j.name for j in jobs]),
        object_colors=np.array([j.color for j in jobs], dtype=np.float64),
    )


def _write_metadata(
    folder: Path, options: Rot3dOptions, summary: Rot3dSummary, screen: ScreenConfig, camera: Camera
) -> None:
    pb = import_pybullet()
    meta: dict[str, Any] = {
        "format": "rot3d", "version": FORMAT_VERSION,
        "source": {"meshes": "pybullet_data/random_urdfs", "package": "pybullet", "licence": "zlib",
                   "pybullet_api_version": int(pb.getAPIVersion())},
        "options": {"objects": options.objects, "train_views": options.train_views,
                    "test_views": options.test_views, "size": options.size, "color": options.color,
                    "seed": options.seed},
        "conventions": {
            "rotation": "p_camera = R @ p_object; camera coordinates x right, y up, z towards the viewer",
            "quaternion": "(w, x, y, z), Hamilton, w >= 0",
            "object_frame": "mesh centred on its surface centroid and scaled into the unit sphere",
        },
        "camera": {**camera.to_dict(), "size": options.size, "renderer": "pybullet TinyRenderer (CPU)"},
        "screen": {**screen.to_dict(), "screened": summary.screened, "kept": len(summary.objects),
                   "skipped_counts": summary.skipped_counts(), "skipped": summary.skipped},
        "objects": summary.objects,
        "num_images": summary.num_images,
        "timing": {"workers": summary.workers, "screen_seconds": round(summary.screen_seconds, 3),
                   "render_seconds": round(summary.render_seconds, 3),
                   "images_per_second": round(summary.images_per_second, 1)},
    }  # fmt: skip
    (folder / MARKER).write_text(json.dumps(meta, indent=2))


def write_contact_sheet(folder: Path, names: list[str], rows: int = 10, columns: int = 8, gap: int = 2) -> Path:
    """A grid of the first ``columns`` train views of the first ``rows`` objects, on light grey."""
    tiles = [[np.asarray(Image.open(folder / image_path("train", n, v)).convert("RGB"))
              for v in range(columns) if (folder / image_path("train", n, v)).is_file()]
             for n in names[:rows]]
    size = tiles[0][0].shape[0]
    width = max(len(r) for r in tiles)
    sheet = np.full((len(tiles) * (size + gap) + gap, width * (size + gap) + gap, 3), 200, dtype=np.uint8)
    for i, row in enumerate(tiles):
        for k, tile in enumerate(row):
            y, x = gap + i * (size + gap), gap + k * (size + gap)
            sheet[y : y + size, x : x + size] = tile
    path = folder / CONTACT_SHEET
    Image.fromarray(sheet).save(path)
    return path


# ---- worker processes: one pybullet client each, created on first use ------------------------------------------

_RENDERER: dict[tuple[int, Camera], Renderer] = {}
_CAMERA: list[Camera] = [Camera()]


def _renderer() -> Renderer:
    key = (os.getpid(), _CAMERA[0])  # a forked child must not reuse its parent's client
    if key not in _RENDERER:
        _RENDERER[key] = Renderer(_CAMERA[0])
    return _RENDERER[key]


def _set_camera(camera: Camera) -> None:
    _CAMERA[0] = camera


def _screen_task(args: tuple[str, str, ScreenConfig]) -> ScreenResult:
    name, path, config = args
    return screen_mesh(_renderer(), name, path, config)


def _render_task(job: _RenderJob) -> int:
    """Render and write every view of one object; returns the number of images."""
    renderer = _renderer()
    renderer.load(job.obj_path, job.frame, job.color)
    count = 0
    try:
        for split, quaternions in job.quaternions.items():
            folder = Path(job.out) / split / job.name
            folder.mkdir(parents=True, exist_ok=True)
            for view, q in enumerate(quaternions):
                rgb, _ = renderer.render(q, job.size)
                Image.fromarray(rgb).save(Path(job.out) / image_path(split, job.name, view), compress_level=1)
                count += 1
    finally:
        renderer.unload()
    return count


class _Workers:
    """``imap``/``imap_unordered`` over a fork pool of ``n`` processes, or in this process when ``n == 1``."""

    def __init__(self, n: int, camera: Camera) -> None:
        self.n = n
        self.camera = camera
        self._pool: Any = None

    def __enter__(self) -> _Workers:
        _set_camera(self.camera)
        if self.n > 1:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            self._pool = ctx.Pool(self.n, initializer=_set_camera, initargs=(self.camera,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def imap(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        return self._pool.imap(fn, items, chunksize=1) if self._pool is not None else map(fn, items)

    def imap_unordered(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        return self._pool.imap_unordered(fn, items) if self._pool is not None else map(fn, items)
