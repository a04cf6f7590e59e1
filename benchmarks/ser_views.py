"""Measured distributions of SER's official equivariant views: relative elements and token grids.

    python benchmarks/ser_views.py [--pairs 4000] [--json out.json]

Builds the T_eq policy of the default SER recipe through ``build_recipe`` (ResNet-18 at 32 px, stage 2: 4x4 grid)
and of the paper's ViT-S/16 at 224 px (14x14 grid), draws ``--pairs`` equivariant pairs for each (two images a
step, so every step's per-view draws are new), and counts the D4 part of the relative element g = g2 g1^-1 and the
two views' grids. SER's views make g one of the four reflections, never the identity or a rotation.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch

from equireg.config import resolve_config
from equireg.engine.trainer import step_generator
from equireg.recipe import build_recipe


def policy_of(overrides: dict[str, object]):  # type: ignore[no-untyped-def]
    cfg = resolve_config(overrides={"train.device": "cpu", **overrides})
    return build_recipe(cfg).pair_policy, cfg.data.image_size


def measure(policy, size: int, pairs: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    elements: Counter[str] = Counter()
    grids: Counter[str] = Counter()
    per_view_sides: Counter[int] = Counter()
    for step in range(pairs // 2):
        out = policy(images, generator=step_generator(0, step))
        code, _, _ = out.group.split(out.g.tensor)
        elements.update(out.group.d4.describe(code))
        for view in (out.view1, out.view2):
            rows, cols = (s // policy.token_stride for s in view.shape[-2:])
            grids[f"{rows}x{cols}"] += 2
            per_view_sides.update([rows, cols])
    return {"pairs": 2 * (pairs // 2), "relative_d4": dict(elements.most_common()),
            "grids": dict(sorted(grids.items(), key=lambda kv: -kv[1])),
            "side_range": [min(per_view_sides), max(per_view_sides)],
            "square_share": sum(v for k, v in grids.items() if k.split("x")[0] == k.split("x")[1]) / sum(grids.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    setups = {
        "resnet18 32px stage 2 (default recipe)": {},
        "vit_small_patch16_224 224px block 3 (paper)": {"backbone.name": "vit_small_patch16_224",
                                                         "data.image_size": 224, "data.name": "synthetic"},
    }
    results = {}
    for name, overrides in setups.items():
        policy, size = policy_of(overrides)
        results[name] = measure(policy, size, args.pairs)
        r = results[name]
        print(f"## {name}: {r['pairs']} pairs, view policy {policy.name}")
        print("relative D4 element:", ", ".join(f"{k} {v}" for k, v in r["relative_d4"].items()))
        top = list(r["grids"].items())[:12]
        print(f"grid sides {r['side_range'][0]}..{r['side_range'][1]}, square grids {r['square_share']:.1%}; "
              "most common grids:", ", ".join(f"{k} {v}" for k, v in top))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
