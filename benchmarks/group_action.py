"""p4m acting on a (256, 384, 14, 14) float32 map with per-sample elements.

Compares equireg's batched action (one gather) with escnn's ``GeometricTensor.transform`` (one element for the
whole batch, through NumPy) and with a per-sample Python loop of torch.rot90/flip. Medians of repeated runs.

    python benchmarks/group_action.py [--threads 2] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from equireg.groups import create_group


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    G = create_group("p4m")
    x = torch.randn(256, 384, 14, 14)
    g = G.sample(256, generator=torch.Generator().manual_seed(0))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    codes = g.tensor.tolist()

    def loop() -> torch.Tensor:
        out = []
        for i, c in enumerate(codes):
            xi = torch.flip(x[i], dims=(-1,)) if c >= 4 else x[i]
            out.append(torch.rot90(xi, c % 4, dims=(-2, -1)))
        return torch.stack(out)

    rows = [
        ("equireg G.act (NCHW, per-sample)", median_ms(lambda: G.act(x, g), args.repeats)),
        ("equireg G.act (channels_last)", median_ms(lambda: G.act(x_cl, g), args.repeats)),
        ("per-sample Python loop", median_ms(loop, args.repeats)),
        ("x.clone() (memory-copy floor)", median_ms(x.clone, args.repeats)),
    ]
    assert torch.equal(G.act(x, g), loop())
    try:
        from equireg.groups.escnn_bridge import import_escnn

        import_escnn()
        from escnn import gspaces
        from escnn import nn as enn

        space = gspaces.flipRot2dOnR2(N=4)
        field = enn.FieldType(space, 384 * [space.trivial_repr])
        element = space.fibergroup.element((1, 1))
        rows.append(
            ("escnn transform (one element, whole batch)", median_ms(lambda: field.transform(x, element), max(3, args.repeats // 3)))
        )
    except ImportError:
        rows.append(("escnn transform", float("nan")))
    base = rows[0][1]
    print(f"p4m action on (256, 384, 14, 14) float32, {args.threads} threads, median of {args.repeats}")
    for name, ms in rows:
        print(f"  {name:<45} {ms:9.2f} ms   {ms / base:6.1f}x equireg")


if __name__ == "__main__":
    main()
