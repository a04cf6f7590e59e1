"""Image-folder loading throughput: equireg's loader against torchvision's ImageFolder pipeline.

On a generated folder of JPEGs (~400x350 px, quality 90, smooth random fields with shapes: ImageNet-like
sizes and compressibility), with the same number of DataLoader workers, interleaved per round:

- ``torchvision``: ``ImageFolder`` + ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip()`` + ``ToTensor()``,
  default collate (one view per decoded image; the issue's baseline);
- ``torchvision x2``: the same transform applied twice to each decoded image (how SSL code gets two views);
- ``equireg 1 view`` / ``equireg 2 views``: ``ImageFolderDataset.host_batches(crops=CropSpec(224, num_views=V))``,
  i.e. the uint8 batches a GPU run copies to the device (the uint8 -> float conversion then runs on the GPU).

Reports images/s (decoded source images; a 2-view pipeline cuts two crops from each) and images/s per worker,
the ratio to torchvision (median of the per-round ratios), and the worker cores per GPU a 2,500 img/s training step
needs. Each round times one epoch of a random subset per pipeline (workers persist between epochs), in rotating
order, so load from other processes hits every pipeline alike.

    python benchmarks/loader.py [--dir DIR] [--images 3000] [--workers 1 2] [--batch 64] [--per-round 1024]
        [--rounds 5] [--json FILE]
    python benchmarks/loader.py --from-json docs/results/loader.json     # the report of a saved run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

import equireg  # noqa: F401  (installs the torchvision shim)
from equireg.data import CropSpec, ImageFolderDataset

TARGET_IMAGES_PER_S = 2500.0


def natural_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random colour field (bicubic upsampling of coarse noise) with a few blurred shapes."""
    coarse = rng.standard_normal((height // 16 + 2, width // 16 + 2, 3))
    coarse = (coarse - coarse.min()) / (np.ptp(coarse) + 1e-9) * 255
    image = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):
        x, y, r = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(8, 90))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
    return image.filter(ImageFilter.GaussianBlur(1.2))


def make_folder(root: Path, n_images: int, n_classes: int = 10, seed: int = 0) -> Path:
    """``root/<class>/<i>.jpg``; reused when it already holds ``n_images`` files."""
    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == n_images:
        return root
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        folder = root / f"class_{i % n_classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        width, height = int(rng.integers(370, 431)), int(rng.integers(320, 381))
        natural_image(rng, width, height).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def torchvision_loader(root: Path, workers: int, batch: int, views: int, n_images: int) -> torch.utils.data.DataLoader[Any]:
    """The baseline on a random ``n_images`` subset (an epoch is one timed round), with persistent workers."""
    from torchvision import datasets, transforms

    one = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    transform = one if views == 1 else (lambda img: [one(img) for _ in range(views)])
    dataset = datasets.ImageFolder(str(root), transform=transform)
    subset = torch.utils.data.Subset(dataset, torch.randperm(len(dataset))[:n_images].tolist())
    return torch.utils.data.DataLoader(subset, batch_size=batch, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, drop_last=True)  # fmt: skip


def timed_epoch(batches: Iterator[Any], batch: int) -> float:
    """Images per second over one whole epoch. Timing whole epochs (workers kept alive between them) leaves no
    batch being prefetched in the background while another pipeline is timed."""
    start = time.perf_counter()
    n = sum(1 for _ in batches)
    return n * batch / (time.perf_counter() - start)


def pipelines(root: Path, workers: int, batch: int, n_images: int) -> dict[str, Callable[[int], Iterator[Any]]]:
    """Each pipeline as ``epoch -> iterator over one epoch`` of ``n_images`` images."""
    ours = ImageFolderDataset(root, image_size=224, num_workers=workers).subset(n_images, seed=0)
    ours2 = ours.subset(range(n_images))  # its own workers, as the torchvision pipelines have
    tv = {v: torchvision_loader(root, workers, batch, v, n_images) for v in (1, 2)}
    return {
        "torchvision": lambda e: iter(tv[1]),
        "torchvision x2": lambda e: iter(tv[2]),
        "equireg 1 view": lambda e: ours.host_batches(batch, epoch=e, crops=CropSpec(224, num_views=1)),
        "equireg 2 views": lambda e: ours2.host_batches(batch, epoch=e, crops=CropSpec(224, num_views=2)),
    }


def measure(root: Path, workers: int, batch: int, per_round: int, rounds: int) -> dict[str, list[float]]:
    runs = pipelines(root, workers, batch, per_round)
    for make in runs.values():  # start the workers and warm the page cache
        timed_epoch(make(0), batch)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
            rates[name].append(timed_epoch(runs[name](r + 1), batch))
        print(f"  workers {workers}, round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()),
              flush=True)  # fmt: skip
    return rates


SAME_VIEWS = {"equireg 1 view": "torchvision", "equireg 2 views": "torchvision x2"}


def _ratio(rates: dict[str, list[float]], name: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(rates[name], rates[base]))


def report(workers: int, rates: dict[str, list[float]]) -> dict[str, Any]:
    """Medians, and ratios as medians of per-round ratios (same load): against torchvision's one view, and
    against the torchvision pipeline that makes as many views."""
    med = {name: statistics.median(v) for name, v in rates.items()}
    ratio = {name: _ratio(rates, name, "torchvision") for name in rates}
    same = {name: _ratio(rates, name, base) for name, base in SAME_VIEWS.items()}
    print(f"\nworkers {workers} (images/s = decoded source images; medians of {len(rates['torchvision'])} rounds)")
    print(f"{'pipeline':18s} {'img/s':>7s} {'img/s/worker':>13s} {'vs torchvision':>15s} {'vs same views':>14s} "
          f"{'workers/GPU @2500':>18s}")  # fmt: skip
    for name, value in med.items():
        per_core = value / workers
        same_text = f"{same[name]:13.2f}x" if name in same else f"{'':14s}"
        print(f"{name:18s} {value:7.0f} {per_core:13.0f} {ratio[name]:14.2f}x {same_text} "
              f"{TARGET_IMAGES_PER_S / per_core:18.1f}")  # fmt: skip
    return {"workers": workers, "median_images_per_s": med, "ratio_vs_torchvision": ratio,
            "ratio_vs_same_views": same, "rounds": rates}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the generated JPEGs (default: a temp dir)")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--per-round", type=int, default=1024, help="images per timed epoch (a random subset)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="print the report of a saved --json run")
    args = parser.parse_args()
    if args.from_json:
        for saved in json.loads(args.from_json.read_text()):
            report(saved["workers"], saved["rounds"])
        return
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(args.dir or Path(tmp) / "jpegs", args.images)
        load_start = os.getloadavg()[0]
        print(f"{args.images} JPEGs in {root}; load average {load_start:.1f} on {os.cpu_count()} cores")
        results = [report(w, measure(root, w, args.batch, args.per_round, args.rounds)) for w in args.workers]
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        for result in results:
            result["load_average"] = [load_start, os.getloadavg()[0]]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
