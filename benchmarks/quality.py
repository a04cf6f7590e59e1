"""MoCo-v3 against MoCo-v3 + SER at a matched budget on Fashion-MNIST, over several seeds.

Both arms train the same backbone for the same number of steps on the same batches (every image gets two
views in both arms; in the SER arm a b2 share of the batch gets the equivariant pair instead of two SSL
views), then report the linear probe (top-1/top-5), the equivariance score per element kind at the SER layer,
the invariance score at the embedding, and the mean corruption accuracy.

    python benchmarks/quality.py --steps 400 --seeds 0 1 2 --out docs/results
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from equireg.config import resolve_config
from equireg.engine import Trainer
from equireg.data.splits import load_splits
from equireg.pipeline import evaluate_equivariance, evaluate_linear, evaluate_robustness, load_run

ARMS = {"moco": {"equiv.loss": "none"}, "moco+ser": {"equiv.loss": "ser"}}


def run_cell(arm: str, seed: int, steps: int, layer: int, root: Path, extra: list[str]) -> dict[str, Any]:
    run_dir = root / f"{arm}-seed{seed}"
    result_file = run_dir / "quality.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = {**ARMS[arm], "equiv.layer": layer, "optim.steps": steps, "train.seed": seed,
                 "train.run_dir": str(run_dir), "eval.robustness_severities": [1, 3, 5]}
    cfg = resolve_config(overrides=overrides, sets=extra)
    train = Trainer(cfg, progress=False).fit()
    run = load_run(run_dir)
    splits = load_splits(run.cfg)
    linear = evaluate_linear(run, splits)
    equiv = evaluate_equivariance(run, splits, layer=layer)
    robust = evaluate_robustness(run, splits, probe=linear)
    row = {"arm": arm, "seed": seed, "steps": steps, "train_seconds": train.wall_seconds,
           "top1": linear.top1, "top5": linear.top5, "robustness_mean": robust.mean_corruption_accuracy,
           **{f"equiv_{k}": v for k, v in equiv.map_scores.items()},
           **{f"inv_{k}": v for k, v in equiv.embedding_scores.items()}}
    result_file.write_text(json.dumps(row, indent=2))
    return row


def summarise(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k not in ("arm", "seed", "steps", "train_seconds")]
    lines = ["| arm | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        cells = []
        for k in keys:
            vals = [r[k] for r in mine]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if abs(vals[0]) < 2 else f"{statistics.mean(vals):.2f} ± {sd:.2f}")
        lines.append(f"| {arm} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path("runs/quality"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides key=value")
    parser.add_argument("--report-only", action="store_true", help="summarise the finished cells, train nothing")
    args = parser.parse_args()
    rows = []
    if args.report_only:
        rows = [json.loads(p.read_text()) for p in sorted(args.root.glob("*/quality.json"))]
    else:
        for seed in args.seeds:
            for arm in ARMS:
                rows.append(run_cell(arm, seed, args.steps, args.layer, args.root, args.sets))
                print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(rows, indent=2))
    table = summarise(rows)
    (args.out / "quality.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
