"""Cost of the SSL view policy T (two views of a batch) relative to one ResNet-18 training step.

Times, on the same (256, 3, 32, 32) batch: (a) ``SSLViewPolicy`` making both views with every parameter
recorded, (b) one forward+backward+SGD step of timm's resnet18 (ImageNet stem) on one view, and reports
(a) / (b). Goal: at most 5%. Also times T_eq (p4m*scale, token stride 4) and each op of view 1 separately.
Medians of repeated runs; other processes on a shared CPU add noise.

    python benchmarks/views.py [--threads 2] [--repeats 10] [--batch 256] [--size 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import equireg  # noqa: F401  (installs the torchvision shim timm needs)
from equireg.augment import EquivariantViewPolicy, SSLViewPolicy, ops
from equireg.groups import create_group


def interleaved_times(fns: list[Callable[[], object]], repeats: int, warmup: int = 2) -> list[list[float]]:
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            bucket.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import timm

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
    policy = SSLViewPolicy()
    eq_policy = EquivariantViewPolicy(create_group("p4m*scale"), token_stride=4)

    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(images).pow(2).mean().backward()
        optimizer.step()

    aug1 = policy.views[0]
    p1 = aug1.sample(args.batch, (args.size, args.size), gen)
    crop = aug1.apply_geometry(images, p1)
    kernel = aug1.photometric.kernel_size(args.size)
    parts = [
        ("  sample parameters (view 1)", lambda: aug1.sample(args.batch, (args.size, args.size), gen)),
        ("  crop + resize + flip", lambda: aug1.apply_geometry(images, p1)),
        ("  colour jitter (p 0.8, random order)", lambda: ops.color_jitter(crop, p1.color, p1.jitter_order, p1.jitter_applied)),
        ("  grayscale (p 0.2)", lambda: ops.to_grayscale(crop, p1.grayscale)),
        ("  gaussian blur (p 1.0)", lambda: ops.gaussian_blur(crop, p1.blur_sigma, kernel)),
    ]

    # interleave the measured functions so that load from other processes hits all of them alike
    views, eq_views, step = interleaved_times(
        [lambda: policy(images, generator=gen), lambda: eq_policy(images, generator=gen), train_step], args.repeats
    )
    med, best = statistics.median, min
    print(f"batch {args.batch} x 3 x {args.size} x {args.size}, torch threads {args.threads}, {args.repeats} runs")
    print(f"{'':44s} {'median':>9s} {'min':>9s}")
    print(f"{'T: two views (SSLViewPolicy)':44s} {med(views):9.2f} {best(views):9.2f} ms")
    for name, fn in parts:
        t = interleaved_times([fn], args.repeats)[0]
        print(f"{name:44s} {med(t):9.2f} {best(t):9.2f} ms")
    print(f"{'T_eq: two views (p4m*scale, stride 4)':44s} {med(eq_views):9.2f} {best(eq_views):9.2f} ms")
    print(f"{'resnet18 fwd+bwd+SGD step (one view)':44s} {med(step):9.2f} {best(step):9.2f} ms")
    print(
        f"T share of one step: {100 * med(views) / med(step):.1f}% of medians, "
        f"{100 * best(views) / best(step):.1f}% of minima (goal <= 5%)"
    )
    print(f"T share of a two-view step (2 x fwd+bwd), medians: {100 * med(views) / (2 * med(step)):.1f}%")


if __name__ == "__main__":
    main()
