"""Bench outputs from the cells' ``result.json`` files: tables (markdown + CSV) with confidence intervals over
seeds and paired differences to the baseline, a forest plot of those differences, and two plots.

Rows are one per (cell, equivariance-scored layer): the baseline (no equivariance loss) appears once per layer of
the sweep, with the same accuracies and the equivariance score measured at that layer. A table row groups the
seeds of one (objective, method, layer, scored layer, group): values are mean ± the 95% t-interval half-width, and
each method's Δ columns are the mean per-seed difference to the baseline of the same objective, seed and scored
layer, with its 95% t-interval (see :mod:`equireg.bench.stats`). Differences are computed only between cells of
the same budget (optimizer steps × global batch); others are refused and the table says so.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equireg.bench.runner import RESULT_FILE
from equireg.bench.stats import Interval, format_difference, format_mean, mean_interval, paired_difference

KINDS = ("rot90", "flip", "scale", "rot")
FIXED_KINDS = ("rotation", "flip", "scale")  # the fixed-place score's averaged kinds
UNKNOWN = "unknown"
# What a run records about how it was trained; read from result.json, else the cell's train_summary.json.
RUN_DESCRIPTION_KEYS = ("views_per_image", "view_policy", "cls_position")
CSV_FIELDS = (
    "cell", "method", "loss", "objective", "layer", "eval_layer", "group", "seed", "equiv_weight", "params_total_M",
    "params_equiv_M", "views_per_image", "view_policy", "cls_position", "top1", "top5", "robustness_mean",
    *(f"equiv_{k}" for k in KINDS), "equiv_mean", *(f"fixed_{k}" for k in FIXED_KINDS), "equiv_fixed",
    "train_seconds", "images_per_second", "steps", "batch_size", "images_seen", "rot_map_source",
    "rot_emb_identity", "rot_emb_rel_r2", "rot_map_identity", "rot_map_rel_r2",
)
# 3D-rotation probes (``evaluate: [rotation]``): object identity and relative-pose R² from the final embedding
# and from the equivariance layer's map; columns and Δs appear only when some cell measured them.
ROTATION_METRICS = {"rot_emb_identity": "identity % (emb)", "rot_emb_rel_r2": "rel. pose R² (emb)",
                    "rot_map_identity": "identity % (map)", "rot_map_rel_r2": "rel. pose R² (map)"}
SUMMARY_METRICS = ("top1", "top5", "robustness_mean", *(f"equiv_{k}" for k in KINDS), "equiv_mean", "equiv_fixed",
                   "train_seconds", *ROTATION_METRICS)
DIFF_METRICS = {"top1": "top-1", "robustness_mean": "robust. mean", "equiv_mean": "equiv mean",
                "equiv_fixed": "equiv fixed place"}


def diff_metrics(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The metrics given paired differences: the standard ones, plus the rotation probes when measured."""
    measured = {k: v for k, v in ROTATION_METRICS.items() if any(r.get(k) is not None for r in rows)}
    return {**DIFF_METRICS, **measured}


def _rotation_fields(rotation: dict[str, Any] | None) -> dict[str, Any]:
    """The rotation probes' identity top-1 and relative-pose R² from the embedding and the (single) layer map."""
    rotation = rotation or {}
    maps = [name for name in rotation if name != "embedding"]
    emb = rotation.get("embedding", {})
    fmap = rotation[maps[0]] if maps else {}
    return {"rot_map_source": maps[0] if maps else None,
            "rot_emb_identity": emb.get("identity_top1"), "rot_emb_rel_r2": emb.get("relative_r2"),
            "rot_map_identity": fmap.get("identity_top1"), "rot_map_rel_r2": fmap.get("relative_r2")}


def load_results(out_dir: Path) -> list[dict[str, Any]]:
    """Every finished cell's result; run-description keys missing there come from its ``train_summary.json``."""
    results = []
    for path in sorted((Path(out_dir) / "cells").glob(f"*/{RESULT_FILE}")):
        result = json.loads(path.read_text())
        summary_file = path.parent / "train_summary.json"
        missing = [k for k in RUN_DESCRIPTION_KEYS if k not in result]
        if missing and summary_file.is_file():
            summary = json.loads(summary_file.read_text())
            result.update({k: summary[k] for k in missing if k in summary})
        results.append(result)
    return results


def rows_from_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        equiv = r.get("equivariance") or {"": {"map": {}}}
        fixed = (r.get("equivariance_fixed") or {}).get("map", {})
        for eval_layer, scores in equiv.items():
            maps = scores.get("map", {})
            present = [v for k, v in maps.items() if k in KINDS]
            steps, batch = r.get("steps"), r.get("batch_size")
            rows.append({
                "cell": r["cell"], "method": r["method"], "loss": r["loss"], "objective": r["objective"],
                "layer": r["layer"], "eval_layer": int(eval_layer) if eval_layer not in ("", "None") else None,
                "group": r.get("group"), "seed": r["seed"], "equiv_weight": r.get("equiv_weight"),
                "params_total_M": r.get("params_total", 0) / 1e6, "params_equiv_M": r.get("params_equiv", 0) / 1e6,
                **{k: r.get(k, UNKNOWN) for k in RUN_DESCRIPTION_KEYS},
                "top1": r.get("linear", {}).get("top1"), "top5": r.get("linear", {}).get("top5"),
                "robustness_mean": r.get("robustness", {}).get("mean"),
                **{f"equiv_{k}": maps.get(k) for k in KINDS},
                "equiv_mean": sum(present) / len(present) if present else None,
                **{f"fixed_{k}": fixed.get(k) for k in FIXED_KINDS},
                "equiv_fixed": sum(fixed.values()) / len(fixed) if fixed else None,
                "train_seconds": r.get("train", {}).get("wall_seconds"),
                "images_per_second": r.get("train", {}).get("images_per_second"),
                "steps": steps, "batch_size": batch,
                "images_seen": steps * batch if steps is not None and batch is not None else None,
                **_rotation_fields(r.get("rotation")),
            })
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path, fields: tuple[str, ...] = CSV_FIELDS) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})


# --- summaries: seeds grouped, intervals, paired differences ------------------------------------------------------


def budget_of(row: dict[str, Any]) -> str:
    """A cell's training budget: optimizer steps × global batch (images seen = their product)."""
    return f"{row.get('steps')}×{row.get('batch_size')}"


@dataclass
class Summary:
    """One table row: the seeds of one (objective, method, layer, scored layer, group)."""

    key: tuple[Any, ...]
    rows: list[dict[str, Any]]
    is_baseline: bool
    values: dict[str, Interval | None] = field(default_factory=dict)
    diffs: dict[str, Interval | None] = field(default_factory=dict)
    diff_notes: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        objective, method, layer, eval_layer, group = self.key
        where = f"L{layer}" if layer is not None else (f"scored L{eval_layer}" if eval_layer is not None else "")
        return " ".join(str(p) for p in (objective, method, where, group) if p)

    def shared(self, key: str) -> str:
        """The value every seed agrees on, or the distinct values joined by '/' (visibly not one setting)."""
        return "/".join(sorted({str(r.get(key, UNKNOWN)) for r in self.rows}))

    @property
    def budget(self) -> str:
        return "/".join(sorted({budget_of(r) for r in self.rows}))


def _group_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["objective"], row["method"], row["layer"], row["eval_layer"], row["group"])


def _order(key: tuple[Any, ...], baseline: str) -> tuple[Any, ...]:
    obj, method, layer, eval_layer, group = key
    return (obj, method != baseline, method, layer or 0, eval_layer or 0, group or "")


def _interval(values: list[Any]) -> Interval | None:
    vals = [float(v) for v in values if v is not None]
    return mean_interval(vals) if vals else None


def _baseline_partner(row: dict[str, Any], index: dict[tuple[Any, ...], list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The baseline row of the same objective, seed and scored layer (and group, when the baseline has several)."""
    candidates = index.get((row["objective"], row["seed"], row["eval_layer"]), [])
    if len(candidates) > 1:
        candidates = [c for c in candidates if c["group"] == row["group"]]
    return candidates[0] if len(candidates) == 1 else None


def _paired(rows: list[dict[str, Any]], metric: str, index: dict[tuple[Any, ...], list[dict[str, Any]]],
            baseline: str) -> tuple[Interval | None, str]:
    """Mean per-seed difference to the baseline with its interval, or None and the reason."""
    method_values, baseline_values, other_budgets = [], [], set()
    for row in sorted(rows, key=lambda r: r["seed"]):
        partner = _baseline_partner(row, index)
        if partner is None or row[metric] is None or partner[metric] is None:
            continue
        if budget_of(row) != budget_of(partner):
            other_budgets.add(budget_of(partner))
            continue
        method_values.append(float(row[metric]))
        baseline_values.append(float(partner[metric]))
    if other_budgets:
        return None, f"budget differs from {baseline}'s ({', '.join(sorted(other_budgets))})"
    if not method_values:
        return None, f"no {baseline} cell of the same seed"
    return paired_difference(method_values, baseline_values), ""


def summarize(rows: list[dict[str, Any]], baseline: str = "none") -> list[Summary]:
    """Table rows in display order, each with its intervals and (methods only) paired differences."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    index: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[_group_key(row)].append(row)
        if row["method"] == baseline:
            index[(row["objective"], row["seed"], row["eval_layer"])].append(row)
    out, metrics = [], diff_metrics(rows)
    for key in sorted(groups, key=lambda k: _order(k, baseline)):
        rs = groups[key]
        summary = Summary(key, rs, is_baseline=key[1] == baseline)
        summary.values = {m: _interval([r[m] for r in rs]) for m in SUMMARY_METRICS}
        if not summary.is_baseline:
            for metric in metrics:
                summary.diffs[metric], summary.diff_notes[metric] = _paired(rs, metric, index, baseline)
        out.append(summary)
    return out


def summary_records(summaries: list[Summary]) -> list[dict[str, Any]]:
    """Flat records of the summary table for ``summary.csv``: means, interval bounds and paired differences."""
    records = []
    for s in summaries:
        objective, method, layer, eval_layer, group = s.key
        first = s.rows[0]
        record: dict[str, Any] = {
            "objective": objective, "method": method, "layer": layer, "eval_layer": eval_layer, "group": group,
            "equiv_weight": first.get("equiv_weight"), "params_total_M": first["params_total_M"],
            "params_equiv_M": first["params_equiv_M"], **{k: s.shared(k) for k in RUN_DESCRIPTION_KEYS},
            "budget": s.budget, "seeds": len(s.rows), "is_baseline": s.is_baseline,
        }
        for metric, interval in s.values.items():
            record.update(_interval_fields(metric, interval))
        for metric, interval in s.diffs.items():
            record.update(_interval_fields(f"diff_{metric}", interval))
            record[f"diff_{metric}_significant"] = None if interval is None else interval.significant
            record[f"diff_{metric}_note"] = s.diff_notes.get(metric) or None
        records.append(record)
    return records


def _interval_fields(name: str, interval: Interval | None) -> dict[str, Any]:
    if interval is None:
        return {f"{name}_mean": None, f"{name}_ci_low": None, f"{name}_ci_high": None, f"{name}_n": 0}
    return {f"{name}_mean": interval.mean, f"{name}_ci_low": interval.low, f"{name}_ci_high": interval.high,
            f"{name}_n": interval.n}


# --- markdown -----------------------------------------------------------------------------------------------------


def _diff_cell(summary: Summary, metric: str, digits: int) -> str:
    if summary.is_baseline:
        return "baseline"
    interval = summary.diffs.get(metric)
    if interval is None:
        note = summary.diff_notes.get(metric, "")
        return "– (budget ≠)" if note.startswith("budget") else "–"
    text = format_difference(interval, digits)
    paired_fewer = 1 < interval.n < len(summary.rows)  # some seeds have no baseline partner ("(n=1)" says it)
    return f"{text} (n={interval.n})" if paired_fewer else text


def _table_row(s: Summary, kinds: list[str], rotation: list[str]) -> list[str]:
    objective, method, layer, eval_layer, group = s.key
    first = s.rows[0]
    layer_txt = "–" if layer is None else str(layer)
    if layer is None and eval_layer is not None:
        layer_txt = f"– (scored at {eval_layer})"
    weight = first.get("equiv_weight")
    v = s.values
    return [
        objective, method, layer_txt, group or "–", "–" if weight is None else f"{weight:g}",
        f"{first['params_total_M']:.2f}", f"{first['params_equiv_M']:.2f}", s.shared("views_per_image"),
        s.shared("view_policy"), s.shared("cls_position"), s.budget, str(len(s.rows)),
        format_mean(v["top1"]), _diff_cell(s, "top1", 2), format_mean(v["top5"]),
        format_mean(v["robustness_mean"]), _diff_cell(s, "robustness_mean", 2),
        *[format_mean(v[f"equiv_{k}"], 3) for k in kinds],
        format_mean(v["equiv_mean"], 3), _diff_cell(s, "equiv_mean", 3),
        format_mean(v["equiv_fixed"], 3), _diff_cell(s, "equiv_fixed", 3),
        *[cell for m in rotation for cell in (format_mean(v[m], metric_digits(m)), _diff_cell(s, m, metric_digits(m)))],
        format_mean(v["train_seconds"], 0),
    ]


def metric_digits(metric: str) -> int:
    """Decimals a metric is printed with: scores and R² in [-1, 1] get 3, percentages 2."""
    return 3 if metric.startswith("equiv") or metric.endswith("r2") else 2


def budget_warning(summaries: list[Summary]) -> str | None:
    """A warning line when the cells of one table were trained with different budgets, else None."""
    cells = {r["cell"]: budget_of(r) for s in summaries for r in s.rows}  # a baseline cell has a row per layer
    counts = Counter(cells.values())
    if len(counts) <= 1:
        return None
    listed = ", ".join(f"{b} ({n} cells)" for b, n in sorted(counts.items()))
    return (f"**Warning: budgets differ within this table** (optimizer steps × global batch: {listed}). Rows of "
            "different budgets are not comparable; paired differences across budgets are refused (– (budget ≠)).")


def markdown_table(rows: list[dict[str, Any]], title: str = "bench", baseline: str = "none") -> str:
    """The paper-shaped table with intervals over seeds and each method's paired differences to ``baseline``."""
    summaries = summarize(rows, baseline)
    kinds = [k for k in KINDS if any(r.get(f"equiv_{k}") is not None for r in rows)]
    rotation = [m for m in diff_metrics(rows) if m in ROTATION_METRICS]
    head = ["objective", "method", "equiv layer", "group", "λ", "params (M)", "+equiv (M)", "views", "view policy",
            "[CLS]", "budget (steps×batch)", "seeds", "top-1", "Δ top-1", "top-5", "robust. mean", "Δ robust.",
            *[f"equiv {k}" for k in kinds], "equiv mean", "Δ equiv mean", "equiv fixed", "Δ equiv fixed",
            *[h for m in rotation for h in (ROTATION_METRICS[m], f"Δ {ROTATION_METRICS[m]}")], "train s"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_table_row(s, kinds, rotation)) + " |" for s in summaries]
    warning = budget_warning(summaries)
    lines += [""] + ([warning, ""] if warning else []) + [
        f"Values: mean ± half-width of the 95% t-interval over seeds (n=1: the single value, no interval). "
        f"Δ: paired difference to `{baseline}` (same objective, seed and budget; equivariance at the same layer): "
        "mean of the per-seed differences [95% t-interval]; **bold** = the interval excludes 0, n.s. = it contains "
        "0 (not distinguishable at this number of seeds). "
        "top-1/top-5: linear probe on the frozen final embedding (%); robust. mean: mean linear top-1 "
        "over corruptions and severities (%); equiv <kind>: equivariance score (mean cosine, 1 = equivariant) "
        "of the layer-k map under that element kind, at the equivariance layer (baseline: at each sweep "
        "layer); equiv fixed: the same score at one fixed place for every run (ViT: final token map; CNN: deepest "
        "map of at least 2x2), rotations averaged over 90/180/270 and scale over 0.7-1.3, so layers and the "
        "baseline compare on one scale; views: views per training image; [CLS]: where a ViT's [CLS] joins (n/a for CNNs); budget: "
        "optimizer steps × global batch; +equiv: trainable parameters the method adds."
        + (" identity % / rel. pose R²: 3D-rotation probes (object identity top-1; R² of the relative rotation "
           "between two renders of one object, 1 = perfect, ≤ 0 = no better than the mean) on the final "
           "embedding (emb) and the equivariance layer's map (map)." if rotation else "")]
    return "\n".join(lines) + "\n"


# --- plots --------------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _point_and_error(interval: Interval | None) -> tuple[float, float]:
    """(mean, half-width) for an error bar; NaN when missing, width 0 when there is a single seed."""
    if interval is None:
        return float("nan"), 0.0
    return interval.mean, interval.half_width or 0.0


def _sweep_series(summaries: list[Summary], metric: str) -> tuple[list[int], list[float], list[float]]:
    """x = the layer (the scored layer for the baseline), y = mean over seeds, error = CI half-width."""
    points = []
    for s in summaries:
        layer = s.key[2] if s.key[2] is not None else s.key[3]
        if layer is not None:
            points.append((layer, *_point_and_error(s.values[metric])))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]


SWEEP_PANELS = (("top1", "linear top-1 (%)"), ("equiv_mean", "equivariance score at layer k (mean over kinds)"),
                ("equiv_fixed", "equivariance score at the fixed place"))


def plot_layer_sweep(rows: list[dict[str, Any]], path: Path, baseline: str = "none") -> None:
    """Per objective: linear top-1, the equivariance score at the trained layer and at the fixed place (the one that
    compares layers on one scale) against the equivariance layer; error bars = 95% t-interval over seeds."""
    plt = _pyplot()
    summaries = summarize(rows, baseline)
    objectives = sorted({s.key[0] for s in summaries})
    panels = [p for p in SWEEP_PANELS if any(s.values.get(p[0]) is not None for s in summaries)]
    fig, axes = plt.subplots(len(objectives), len(panels), figsize=(5 * len(panels), 3.6 * len(objectives)),
                             squeeze=False)
    for row_axes, obj in zip(axes, objectives):
        methods = sorted({s.key[1] for s in summaries if s.key[0] == obj})
        layers: set[int] = set()
        for i, method in enumerate(methods):
            mine = [s for s in summaries if s.key[0] == obj and s.key[1] == method]
            style = dict(linestyle="--", color="black", marker="x") if mine[0].is_baseline else dict(marker="o")
            dodge = 0.06 * (i - (len(methods) - 1) / 2)  # side by side, so overlapping error bars stay readable
            for ax, (metric, _) in zip(row_axes, panels):
                xs, ys, errs = _sweep_series(mine, metric)
                layers.update(xs)
                if xs:
                    ax.errorbar([x + dodge for x in xs], ys, yerr=errs, label=method, capsize=3, **style)
        for ax, (_, ylabel) in zip(row_axes, panels):
            ax.set_xlabel("equivariance layer k")
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(f"{obj}: {ylabel.split(' (')[0]}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xticks(sorted(layers))
        if row_axes[0].get_legend_handles_labels()[0]:
            row_axes[0].legend(fontsize=8)
    fig.suptitle("by equivariance layer (baseline: at the layer it is scored; 95% CI over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FOREST_COLUMNS = 3


def forest_metrics(rows: list[dict[str, Any]], methods: list[Summary]) -> dict[str, str]:
    """The metrics with at least one paired difference: a panel nobody measured would only be empty."""
    return {m: name for m, name in diff_metrics(rows).items() if any(s.diffs.get(m) is not None for s in methods)}


def plot_forest(rows: list[dict[str, Any]], path: Path, baseline: str = "none") -> None:
    """One panel per metric: each method/layer's paired difference to the baseline, point + 95% CI, a line at 0.
    Filled markers: the interval excludes 0; hollow: it does not (or a single seed, no interval)."""
    plt = _pyplot()
    methods = [s for s in summarize(rows, baseline) if not s.is_baseline]
    metrics = forest_metrics(rows, methods) or {"top1": "top-1"}  # nothing paired yet: one panel that says so
    ncols = min(FOREST_COLUMNS, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, nrows * (1.1 + 0.3 * max(1, len(methods)))),
                             squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, (metric, name) in zip(axes.flat, metrics.items()):
        for y, s in enumerate(reversed(methods)):
            interval = s.diffs.get(metric)
            if interval is None:
                continue
            mean, half = _point_and_error(interval)
            ax.errorbar([mean], [y], xerr=[[half], [half]], fmt="o", color="C0", capsize=3,
                        markerfacecolor="C0" if interval.significant else "white")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(methods)), [s.label for s in reversed(methods)], fontsize=7)
        ax.set_title(f"Δ {name} vs {baseline}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if not any(s.diffs.get(metric) is not None for s in methods):
            ax.text(0.5, 0.5, "no paired differences", transform=ax.transAxes, ha="center", va="center")
    fig.suptitle("paired differences to the baseline (mean over seeds, 95% t-interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_vs_equivariance(rows: list[dict[str, Any]], path: Path) -> None:
    """Linear top-1 against the mean equivariance score at the equivariance layer, one marker per cell."""
    plt = _pyplot()
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


# --- files --------------------------------------------------------------------------------------------------------


def spec_baseline(out_dir: Path) -> str:
    """The baseline label of the spec the runner saved in ``out_dir`` (``none`` when there is none)."""
    saved = Path(out_dir) / "spec.yaml"
    if saved.is_file():
        try:
            return str(json.loads(saved.read_text()).get("baseline") or "none")
        except (json.JSONDecodeError, AttributeError):
            pass
    return "none"


def write_reports(out_dir: str | Path, title: str = "bench", cells: Any = None,
                  baseline: str | None = None) -> dict[str, Path]:
    """Write results.csv (every seed), summary.csv and results.md (seeds pooled: intervals and paired
    differences), paired_differences.png, layer_sweep.png and accuracy_vs_equivariance.png into ``out_dir``."""
    out = Path(out_dir)
    baseline = baseline or spec_baseline(out)
    rows = rows_from_results(load_results(out))
    paths = {"csv": out / "results.csv", "summary_csv": out / "summary.csv", "markdown": out / "results.md",
             "paired_differences": out / "paired_differences.png", "layer_sweep": out / "layer_sweep.png",
             "accuracy_vs_equivariance": out / "accuracy_vs_equivariance.png"}
    write_csv(rows, paths["csv"])
    records = summary_records(summarize(rows, baseline))
    fields = tuple(dict.fromkeys(k for record in records for k in record)) or ("objective", "method")
    write_csv(records, paths["summary_csv"], fields)
    text = markdown_table(rows, title, baseline)
    if cells is not None:
        done = {r["cell"] for r in rows}
        missing = [c.id for c in cells if c.id not in done]
        if missing:
            text += f"\nNot finished ({len(missing)}): {', '.join(missing)}\n"
    paths["markdown"].write_text(text)
    if rows:
        plot_forest(rows, paths["paired_differences"], baseline)
        plot_layer_sweep(rows, paths["layer_sweep"], baseline)
        plot_accuracy_vs_equivariance(rows, paths["accuracy_vs_equivariance"])
    return paths
