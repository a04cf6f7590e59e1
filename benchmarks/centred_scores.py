"""Re-score a finished bench folder's equivariance with the centred cosine, and pair the arms.

    python benchmarks/centred_scores.py runs/exp-vit ser_arch@3:none@3 ser@3:none@3 ser@3:ser_arch@3 \
        [--out docs/results/exp-vit/centred.md]

The bench scores raw cosines, which sit at 0.98-1.00 for every ViT token map (a large offset shared by all tokens
dominates them), so they cannot tell ViT arms apart. This loads each finished cell's backbone, scores the same
layers and the fixed place with ``center=True`` (the batch-mean offset removed; docs/evaluation.md) on the same
test images, and prints the bench table's equivariance columns and the paired contrasts computed from those
centred scores. Nothing in the bench folder is changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from equireg.bench.contrast import Arm, contrast_table
from equireg.bench.report import load_results, markdown_table, rows_from_results
from equireg.data.splits import load_splits
from equireg.evaluation.equivariance import FIXED
from equireg.pipeline import evaluate_equivariance, load_run


def centred(result: dict[str, Any], cell_dir: Path, group: str | None) -> dict[str, Any]:
    """The cell's result with its equivariance scores replaced by centred ones at the same places."""
    run = load_run(cell_dir)
    splits = load_splits(run.cfg)
    scores = {}
    for layer in result.get("equivariance") or {}:
        res = evaluate_equivariance(run, splits, group=group, layer=int(layer), save=False, center=True)
        scores[layer] = {"map": res.map_scores, "embedding": res.embedding_scores}
    fixed = evaluate_equivariance(run, splits, group=group, layer=FIXED, save=False, center=True)
    return {**result, "equivariance": scores,
            "equivariance_fixed": {"map": fixed.map_scores, "embedding": fixed.embedding_scores}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("pairs", nargs="*", help="A:B pairs of arms, as in `equireg bench compare`")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    spec = json.loads((args.out_dir / "spec.yaml").read_text())
    results = [centred(r, args.out_dir / "cells" / r["cell"], spec.get("equivariance_group"))
               for r in load_results(args.out_dir)]
    rows = rows_from_results(results)
    title = f"{args.out_dir.name}: every equiv column is the centred cosine (batch-mean offset removed)"
    text = markdown_table(rows, title, spec.get("baseline") or "none")
    if args.pairs:
        pairs = [tuple(Arm.parse(a) for a in p.split(":", 1)) for p in args.pairs]
        text += "\n" + contrast_table(rows, pairs)  # type: ignore[arg-type]
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
