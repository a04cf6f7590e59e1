"""The rot3d probe table for reference features and trained runs, over several probe seeds (mean ± sd).

Reference features: raw pixels (64 px RGB, 12,288-d; the probes reduce wider features to 256-d by PCA), a
random Gaussian projection of the pixels to 256-d (drawn per probe seed), and the labels themselves (the
flattened rotation matrix next to a one-hot object id), which give the probes' ceiling. Trained runs (e.g.
MoCo-v3 and MoCo-v3 + SER pretrained on the rot3d train split) add their final embedding and their split
layer's map, mean-pooled. Makes the default set in ``--data`` first when it does not exist.

    python benchmarks/rot3d_baselines.py --data runs/rot3d --seeds 0 1 2 \\
        --runs moco=runs/rot3d-none moco+ser=runs/rot3d-ser --out docs/results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from equireg.data.rot3d import Rot3dLabels, load_labels, make_rot3d
from equireg.evaluation.rotation import load_images, rotation_probes, run_backbone, split_features

METRICS = ("identity_top1", "absolute_r2", "absolute_geodesic_deg", "relative_r2", "relative_geodesic_deg",
           "relative_linear_r2")
HEADERS = ("identity top-1 %", "abs R²", "abs error °", "rel R²", "rel error °", "rel R² linear (sanity)")


def reference_features(labels: Rot3dLabels, seed: int) -> dict[str, torch.Tensor]:
    pixels = load_images(labels.files(), _native_size(labels)).float().div(255).flatten(1)
    gen = torch.Generator().manual_seed(seed)
    projection = torch.randn(pixels.shape[1], 256, generator=gen) / pixels.shape[1] ** 0.5
    rotation = torch.from_numpy(labels.rotation).float().reshape(-1, 9)
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(labels.object)).float()
    return {"raw pixels": pixels, "random projection of pixels": pixels @ projection,
            "labels (ceiling)": torch.cat([rotation, one_hot], dim=1)}


def _native_size(labels: Rot3dLabels) -> int:
    return int(json.loads((labels.root / "rot3d.json").read_text())["options"]["size"])


def run_features(name: str, run_dir: Path, labels: Rot3dLabels) -> dict[str, torch.Tensor]:
    from equireg.pipeline import _amp, load_run

    run = load_run(run_dir)
    images = load_images(labels.files(), run.cfg.data.image_size)
    feats = split_features(run_backbone(run), images, batch_size=run.cfg.eval.batch_size, amp_dtype=_amp(run.cfg))
    return {f"{name}: {key}": value for key, value in feats.items()}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| features | seeds | " + " | ".join(HEADERS) + " |", "|---|---|" + "---|" * len(HEADERS)]
    for name in dict.fromkeys(r["features"] for r in rows):
        mine = [r for r in rows if r["features"] == name]
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in mine]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            digits = 1 if metric.endswith(("deg", "top1")) else 3
            cells.append(f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}")
        lines.append(f"| {name} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/rot3d"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", nargs="*", default=[], help="label=RUN_DIR pairs of trained runs")
    parser.add_argument("--out", type=Path, default=None, help="folder for rot3d_baselines.json / .md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.data.exists():
        make_rot3d(args.data)
    labels = load_labels(args.data)
    trained: dict[str, torch.Tensor] = {}
    for spec in args.runs:
        name, run_dir = spec.split("=", 1)
        trained.update(run_features(name, Path(run_dir), labels))
    rows: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    for seed in args.seeds:
        t0 = time.perf_counter()
        result = rotation_probes({**reference_features(labels, seed), **trained}, labels.rotation, labels.object,
                                 labels.split, seed=seed)
        rows += [{"features": name, "seed": seed, **s.to_dict()} for name, s in result.scores.items()]
        load.append(os.getloadavg()[0])
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    text = table(rows)
    print(f"{result.num_objects} objects; test: {result.num_test} images, {result.num_test_pairs} pairs; "
          f"1-min load average {min(load):.2f}-{max(load):.2f}\n\n{text}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rot3d_baselines.json").write_text(json.dumps({"rows": rows, "load": load}, indent=2))
        (args.out / "rot3d_baselines.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
