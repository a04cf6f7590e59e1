"""Bench outputs from the cells' ``result.json`` files: ``results.csv``, ``results.md`` and two PNG plots.

Rows are one per (cell, equivariance-scored layer): the baseline (no equivariance loss) appears once per layer of
the sweep, with the same accuracies and the equivariance score measured at that layer. Seeds are averaged in the
markdown table (mean ± std when there are several); the CSV keeps every seed.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from equireg.bench.runner import RESULT_FILE

KINDS = ("rot90", "flip", "scale", "rot")
CSV_FIELDS = (
    "cell", "method", "loss", "objective", "layer", "eval_layer", "group", "seed", "equiv_weight", "params_total_M",
    "params_equiv_M", "views_per_image", "top1", "top5", "robustness_mean", *(f"equiv_{k}" for k in KINDS),
    "equiv_mean", "train_seconds", "images_per_second", "steps", "batch_size",
)


def load_results(out_dir: Path) -> list[dict[str, Any]]:
    results = []
    for path in sorted((out_dir / "cells").glob(f"*/{RESULT_FILE}")):
        results.append(json.loads(path.read_text()))
    return results


def rows_from_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        equiv = r.get("equivariance") or {"": {"map": {}}}
        for eval_layer, scores in equiv.items():
            maps = scores.get("map", {})
            present = [v for k, v in maps.items() if k in KINDS]
            rows.append({
                "cell": r["cell"], "method": r["method"], "loss": r["loss"], "objective": r["objective"],
                "layer": r["layer"], "eval_layer": int(eval_layer) if eval_layer not in ("", "None") else None,
                "group": r.get("group"), "seed": r["seed"], "equiv_weight": r.get("equiv_weight"),
                "params_total_M": r.get("params_total", 0) / 1e6, "params_equiv_M": r.get("params_equiv", 0) / 1e6,
                "views_per_image": r.get("views_per_image"),
                "top1": r.get("linear", {}).get("top1"), "top5": r.get("linear", {}).get("top5"),
                "robustness_mean": r.get("robustness", {}).get("mean"),
                **{f"equiv_{k}": maps.get(k) for k in KINDS},
                "equiv_mean": sum(present) / len(present) if present else None,
                "train_seconds": r.get("train", {}).get("wall_seconds"),
                "images_per_second": r.get("train", {}).get("images_per_second"),
                "steps": r.get("steps"), "batch_size": r.get("batch_size"),
            })
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_FIELDS})


def _fmt(values: list[Any], digits: int = 2) -> str:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _group_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["objective"], row["method"], row["layer"], row["eval_layer"], row["group"])


def markdown_table(rows: list[dict[str, Any]], title: str = "bench") -> str:
    """The paper-shaped table: method, parameters, view count, linear top-1/top-5, robustness, equivariance."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[_group_key(row)].append(row)
    kinds = [k for k in KINDS if any(r.get(f"equiv_{k}") is not None for r in rows)]
    head = ["objective", "method", "equiv layer", "group", "λ", "params (M)", "+equiv (M)", "views", "seeds",
            "top-1", "top-5", "robust. mean", *[f"equiv {k}" for k in kinds], "train s"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def order(key: tuple[Any, ...]) -> tuple[Any, ...]:
        obj, method, layer, eval_layer, group = key
        return (obj, method != "none", method, layer or 0, eval_layer or 0, group or "")

    for key in sorted(groups, key=order):
        rs = groups[key]
        obj, method, layer, eval_layer, group = key
        first = rs[0]
        layer_txt = "–" if layer is None else str(layer)
        if layer is None and eval_layer is not None:
            layer_txt = f"– (scored at {eval_layer})"
        weight = first.get("equiv_weight")
        lines.append("| " + " | ".join([
            obj, method, layer_txt, group or "–", "–" if weight is None else f"{weight:g}",
            f"{first['params_total_M']:.2f}", f"{first['params_equiv_M']:.2f}", str(first.get("views_per_image")),
            str(len(rs)), _fmt([r["top1"] for r in rs]), _fmt([r["top5"] for r in rs]),
            _fmt([r["robustness_mean"] for r in rs]), *[_fmt([r[f"equiv_{k}"] for r in rs], 3) for k in kinds],
            _fmt([r["train_seconds"] for r in rs], 0),
        ]) + " |")
    lines += ["", "top-1/top-5: linear probe on the frozen final embedding (%); robust. mean: mean linear top-1 "
              "over corruptions and severities (%); equiv <kind>: equivariance score (mean cosine, 1 = equivariant) "
              "of the layer-k map under that element kind, at the equivariance layer (baseline: at each sweep "
              "layer); views: views per training image; +equiv: trainable parameters the method adds."]
    return "\n".join(lines) + "\n"


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def plot_layer_sweep(rows: list[dict[str, Any]], path: Path) -> None:
    """Per objective: linear top-1 and mean equivariance score against the equivariance layer, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = sorted({r["objective"] for r in rows})
    fig, axes = plt.subplots(len(objectives), 2, figsize=(10, 3.6 * len(objectives)), squeeze=False)
    for (ax_acc, ax_eq), obj in zip(axes, objectives):
        sub = [r for r in rows if r["objective"] == obj]
        for method in sorted({r["method"] for r in sub}):
            mr = [r for r in sub if r["method"] == method]
            is_base = all(r["layer"] is None for r in mr)
            x_key = "eval_layer" if is_base else "layer"
            layers = sorted({r[x_key] for r in mr if r[x_key] is not None})
            acc = [_mean([r["top1"] for r in mr if r[x_key] == k]) for k in layers]
            eq = [_mean([r["equiv_mean"] for r in mr if r[x_key] == k]) for k in layers]
            style = dict(linestyle="--", color="black", marker="x") if is_base else dict(marker="o")
            if layers:
                ax_acc.plot(layers, [a if a is not None else float("nan") for a in acc], label=method, **style)
                ax_eq.plot(layers, [e if e is not None else float("nan") for e in eq], label=method, **style)
        for ax, ylabel in ((ax_acc, "linear top-1 (%)"), (ax_eq, "equivariance score (mean over kinds)")):
            ax.set_xlabel("equivariance layer k")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{obj}: {ylabel.split(' (')[0]} vs layer")
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
        if ax_acc.get_legend_handles_labels()[0]:
            ax_acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_vs_equivariance(rows: list[dict[str, Any]], path: Path) -> None:
    """Linear top-1 against the mean equivariance score at the equivariance layer, one marker per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    markers = "osD^vP*X<>"
    methods = sorted({r["method"] for r in rows})
    several_objectives = len({r["objective"] for r in rows}) > 1
    for i, method in enumerate(methods):
        mr = [r for r in rows if r["method"] == method and r["top1"] is not None and r["equiv_mean"] is not None]
        if not mr:
            continue
        ax.scatter([r["equiv_mean"] for r in mr], [r["top1"] for r in mr], marker=markers[i % len(markers)],
                   label=method, color="black" if method == "none" else None)
        for r in mr:
            k = r["layer"] if r["layer"] is not None else r["eval_layer"]
            ax.annotate(f"L{k}" + (f" {r['objective']}" if several_objectives else ""), (r["equiv_mean"], r["top1"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("equivariance score at the equivariance layer (mean over kinds)")
    ax.set_ylabel("linear top-1 (%)")
    ax.set_title("accuracy vs equivariance")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(out_dir: str | Path, title: str = "bench", cells: Any = None) -> dict[str, Path]:
    """Write results.csv, results.md, layer_sweep.png and accuracy_vs_equivariance.png into ``out_dir``."""
    out = Path(out_dir)
    rows = rows_from_results(load_results(out))
    paths = {"csv": out / "results.csv", "markdown": out / "results.md", "layer_sweep": out / "layer_sweep.png",
             "accuracy_vs_equivariance": out / "accuracy_vs_equivariance.png"}
    write_csv(rows, paths["csv"])
    text = markdown_table(rows, title)
    if cells is not None:
        done = {r["cell"] for r in rows}
        missing = [c.id for c in cells if c.id not in done]
        if missing:
            text += f"\nNot finished ({len(missing)}): {', '.join(missing)}\n"
    paths["markdown"].write_text(text)
    if rows:
        plot_layer_sweep(rows, paths["layer_sweep"])
        plot_accuracy_vs_equivariance(rows, paths["accuracy_vs_equivariance"])
    return paths
