"""Our view ops against kornia's equivalents, in one interleaved run (the measurement behind docs/performance.md's
"kornia" section; kornia is not a dependency of equireg, install it to run this: pip install kornia).

For each op of the SSL view policy T (view 1's settings), times the equireg op on recorded parameters and kornia's
random module with the same distribution (which also draws its own parameters, a small share of its time):
RandomResizedCrop + RandomHorizontalFlip, ColorJiggle (torchvision's random op order, like ours) and ColorJitter
(fixed order), RandomGrayscale, RandomGaussianBlur, RandomSolarize; for the two ops where kornia's functional form
could take our recorded parameters (per-sample Gaussian blur, box crop + resize) that form too; and the whole view
(T's view 1, drawing every parameter on both sides: ours vs one kornia AugmentationSequential). All functions of one image size run interleaved, so load
from other processes hits them alike; reported are medians and the ratio kornia / ours (> 1: ours is faster).

    python benchmarks/views_kornia.py [--threads 1] [--repeats 15] [--sizes 32:256 224:32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import equireg  # noqa: F401  (installs the torchvision shim)
from equireg.augment import CropConfig, PhotometricConfig, ViewAugmentation, ops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from views import interleaved_times  # noqa: E402

Case = tuple[str, Callable[[], object], Callable[[], object]]  # name, ours, kornia


def cases(batch: int, side: int, generator: torch.Generator) -> list[Case]:
    """(name, ours, kornia) for every op of T's first view at ``side`` px."""
    import kornia.augmentation as K
    from kornia.filters import gaussian_blur2d
    from kornia.geometry.transform import crop_and_resize

    images = torch.rand(batch, 3, side, side, generator=generator)
    photometric = PhotometricConfig.view1(solarize_p=0.2)  # solarize on, to time it (view 2 uses it)
    view = ViewAugmentation(CropConfig(), photometric, output_size=side)
    params = view.sample(batch, (side, side), generator)
    crop = view.apply_geometry(images, params)
    kernel = photometric.kernel_size(side)
    sigma = params.blur_sigma.clamp_min(0.1)  # view 1 always blurs
    boxes = _corner_boxes(params.crop, side)

    k_crop = K.AugmentationSequential(K.RandomResizedCrop((side, side), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
                                      K.RandomHorizontalFlip(p=0.5))
    k_jiggle = K.ColorJiggle(0.4, 0.4, 0.2, 0.1, p=0.8)
    k_jitter = K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8)
    k_gray = K.RandomGrayscale(p=0.2)
    k_blur = K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=1.0)
    k_solarize = K.RandomSolarize(thresholds=0.0, additions=0.0, p=0.2)  # threshold exactly 0.5, as ours
    k_view = K.AugmentationSequential(K.RandomResizedCrop((side, side), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
                                      K.RandomHorizontalFlip(p=0.5), K.ColorJiggle(0.4, 0.4, 0.2, 0.1, p=0.8),
                                      K.RandomGrayscale(p=0.2), K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=1.0))
    plain_view = ViewAugmentation(CropConfig(), PhotometricConfig.view1(), output_size=side)
    return [
        ("crop + resize + flip", lambda: view.apply_geometry(images, params), lambda: k_crop(images)),
        ("  same, kornia crop_and_resize on our boxes", lambda: view.apply_geometry(images, params),
         lambda: crop_and_resize(images, boxes, (side, side))),
        ("colour jitter, random order (ColorJiggle)",
         lambda: ops.color_jitter(crop, params.color, params.jitter_order, params.jitter_applied),
         lambda: k_jiggle(crop)),
        ("colour jitter vs ColorJitter (fixed order)",
         lambda: ops.color_jitter(crop, params.color, params.jitter_order, params.jitter_applied),
         lambda: k_jitter(crop)),
        ("grayscale p 0.2", lambda: ops.to_grayscale(crop, params.grayscale), lambda: k_gray(crop)),
        (f"gaussian blur p 1.0, {kernel}x{kernel}", lambda: ops.gaussian_blur(crop, sigma, kernel),
         lambda: k_blur(crop)),
        ("  same, kornia gaussian_blur2d on our sigmas", lambda: ops.gaussian_blur(crop, sigma, kernel),
         lambda: gaussian_blur2d(crop, (kernel, kernel), sigma[:, None].expand(-1, 2), border_type="reflect")),
        ("solarize p 0.2", lambda: ops.solarize(crop, params.solarize, 0.5), lambda: k_solarize(crop)),
        ("whole view (sample + all ops, no solarize)", lambda: plain_view(images, generator), lambda: k_view(images)),
    ]


def _corner_boxes(crop: torch.Tensor, side: int) -> torch.Tensor:
    """Our (centre y, centre x, height, width) fractions as kornia's (B, 4, 2) pixel corners (x, y)."""
    cy, cx, h, w = (crop * side).unbind(-1)
    x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2 - 1, cy + h / 2 - 1
    return torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1), torch.stack([x1, y1], -1),
                        torch.stack([x0, y1], -1)], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", nargs="+", default=["32:256", "224:32"], help="SIDE:BATCH pairs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import kornia

    generator = torch.Generator().manual_seed(0)
    print(f"kornia {kornia.__version__}, torch {torch.__version__}, {args.threads} thread(s), {args.repeats} runs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    for spec in args.sizes:
        side, batch = (int(v) for v in spec.split(":"))
        table = cases(batch, side, generator)
        fns = [fn for _, ours, theirs in table for fn in (ours, theirs)]
        times = interleaved_times(fns, args.repeats)
        print(f"\n{side} px, batch {batch}: medians (ms)")
        print(f"| op | equireg | kornia | kornia / equireg |\n|---|---|---|---|")
        for i, (name, _, _) in enumerate(table):
            mine, theirs = statistics.median(times[2 * i]), statistics.median(times[2 * i + 1])
            print(f"| {name.strip()} | {mine:.2f} | {theirs:.2f} | {theirs / mine:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
