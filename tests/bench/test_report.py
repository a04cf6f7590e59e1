"""The bench report on hand-written cell results: intervals over seeds, paired differences to the baseline,
refused comparisons across budgets, the run-description columns and the written files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from equireg.bench.report import (
    DIFF_METRICS,
    forest_metrics,
    RUN_DESCRIPTION_KEYS,
    load_results,
    rows_from_results,
    summarize,
    write_reports,
)
from equireg.bench.runner import RESULT_FILE


def fake_result(method: str, seed: int, top1: float, *, layer: int | None = None, steps: int = 150,
                robustness: float = 40.0, equiv: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    cell = f"moco-{method}" + (f"-L{layer}" if layer is not None else "") + f"-s{seed}"
    scores = {str(layer if layer is not None else 2): {"map": equiv or {"rot90": 0.5, "flip": 0.7}, "embedding": {}}}
    return {"cell": cell, "method": method, "loss": method, "objective": "moco", "layer": layer, "group": None,
            "seed": seed, "steps": steps, "batch_size": 128, "equiv_weight": None if method == "none" else 1.0,
            "params_total": 2_000_000, "params_equiv": 0, "views_per_image": 2,
            "linear": {"top1": top1, "top5": 99.0}, "robustness": {"mean": robustness},
            "equivariance": scores, "equivariance_fixed": {"map": {"rotation": 0.4, "flip": 0.6}},
            "train": {"wall_seconds": 10.0}, **extra}


def write_cells(out: Path, results: list[dict[str, Any]]) -> None:
    for result in results:
        (out / "cells" / result["cell"]).mkdir(parents=True, exist_ok=True)
        (out / "cells" / result["cell"] / RESULT_FILE).write_text(json.dumps(result))


def three_seed_bench(tmp_path: Path) -> Path:
    out = tmp_path / "bench"
    base = [75.0, 75.0, 76.0]
    write_cells(out, [fake_result("none", s, base[s]) for s in range(3)])
    # ser: top-1 differences 2, 3, 4 (hand-computed interval in test_stats: [+0.52, +5.48]); robustness identical
    write_cells(out, [fake_result("ser", s, base[s] + 2 + s, layer=2) for s in range(3)])
    # augself: the same numbers as the baseline in every metric: a zero difference of zero width
    write_cells(out, [fake_result("augself", s, base[s], layer=2) for s in range(3)])
    return out


def test_table_shows_intervals_and_paired_differences(tmp_path: Path) -> None:
    out = three_seed_bench(tmp_path)
    paths = write_reports(out, title="t")
    table = paths["markdown"].read_text()
    ser = next(line for line in table.splitlines() if line.startswith("| moco | ser |"))
    assert "**+3.00 [+0.52, +5.48]**" in ser  # Δ top-1, significant: bolded
    assert "78.33 ± " in ser and "| 3 |" in ser  # mean over 3 seeds with its half-width; seeds column
    assert "+0.00 [+0.00, +0.00] n.s." in ser  # Δ robustness: identical across arms
    augself = next(line for line in table.splitlines() if line.startswith("| moco | augself |"))
    assert augself.count("+0.00 [+0.00, +0.00] n.s.") == 2 and augself.count("+0.000 [+0.000, +0.000] n.s.") == 2
    assert "**" not in augself  # nothing bolded when every interval contains 0
    base = next(line for line in table.splitlines() if line.startswith("| moco | none |"))
    assert "baseline" in base and "150×128" in base
    assert "Warning" not in table and "n.s. = it contains 0" in table


def test_zero_difference_has_zero_width(tmp_path: Path) -> None:
    rows = rows_from_results(load_results(three_seed_bench(tmp_path)))
    augself = next(s for s in summarize(rows) if s.key[1] == "augself")
    for metric, interval in augself.diffs.items():
        assert interval is not None and interval.n == 3, metric
        assert interval.mean == 0.0 and interval.half_width == 0.0 and not interval.significant, metric


def test_mismatched_budget_is_refused_and_flagged(tmp_path: Path) -> None:
    out = three_seed_bench(tmp_path)
    write_cells(out, [fake_result("stl", s, 80.0, layer=2, steps=300) for s in range(3)])
    paths = write_reports(out)
    table = paths["markdown"].read_text()
    stl = next(line for line in table.splitlines() if line.startswith("| moco | stl |"))
    assert "300×128" in stl and stl.count("– (budget ≠)") == len(DIFF_METRICS)
    assert "**Warning: budgets differ within this table**" in table and "300×128 (3 cells)" in table
    rows = list(csv.DictReader(paths["summary_csv"].open()))
    stl_row = next(r for r in rows if r["method"] == "stl")
    assert stl_row["diff_top1_mean"] == "" and "budget differs" in stl_row["diff_top1_note"]
    ser_row = next(r for r in rows if r["method"] == "ser")
    assert float(ser_row["diff_top1_ci_low"]) > 0 and ser_row["diff_top1_significant"] == "True"


def test_single_seed_and_missing_baseline_seed(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    write_cells(out, [fake_result("none", 0, 75.0), fake_result("ser", 0, 76.0, layer=2),
                      fake_result("ser", 1, 77.0, layer=2)])
    table = write_reports(out)["markdown"].read_text()
    ser = next(line for line in table.splitlines() if line.startswith("| moco | ser |"))
    assert "+1.00 (n=1) (n=1)" not in ser and "+1.00 (n=1)" in ser  # only seed 0 has a baseline partner
    base = next(line for line in table.splitlines() if line.startswith("| moco | none |"))
    assert "75.00 (n=1)" in base


def test_run_description_columns_and_defaults(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    write_cells(out, [fake_result("none", 0, 75.0), fake_result("ser", 0, 76.0, layer=2)])
    # recorded in the result row, or (older results) only in the cell's train_summary.json, or not at all
    (out / "cells" / "moco-ser-L2-s0" / "train_summary.json").write_text(
        json.dumps({"cls_position": "after_equiv", "view_policy": "ser"}))
    rows = {r["method"]: r for r in rows_from_results(load_results(out))}
    assert rows["ser"]["cls_position"] == "after_equiv" and rows["ser"]["view_policy"] == "ser"
    assert rows["none"]["cls_position"] == "unknown" and rows["none"]["views_per_image"] == 2
    table = write_reports(out)["markdown"].read_text()
    assert "| [CLS] |" in table and "| after_equiv |" in table and "| unknown |" in table
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert set(RUN_DESCRIPTION_KEYS) <= set(header) and "images_seen" in header


def test_baseline_is_configurable_and_read_from_the_saved_spec(tmp_path: Path) -> None:
    out = three_seed_bench(tmp_path)
    (out / "spec.yaml").write_text(json.dumps({"baseline": "augself"}))
    table = write_reports(out)["markdown"].read_text()
    ser = next(line for line in table.splitlines() if line.startswith("| moco | ser |"))
    assert "**+3.00 [+0.52, +5.48]**" in ser and "paired difference to `augself`" in table
    augself = next(line for line in table.splitlines() if line.startswith("| moco | augself |"))
    assert "baseline" in augself


def test_plots_are_written(tmp_path: Path) -> None:
    paths = write_reports(three_seed_bench(tmp_path))
    for name in ("paired_differences", "layer_sweep", "accuracy_vs_equivariance", "csv", "summary_csv"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name


def test_rotation_probes_get_columns_and_paired_differences(tmp_path: Path) -> None:
    out = tmp_path / "bench"

    def rotation(identity: float, r2: float) -> dict[str, Any]:
        probe = {"identity_top1": identity, "relative_r2": r2}
        return {"rotation": {"embedding": probe, "layer-2 map": {"identity_top1": identity + 5, "relative_r2": r2}}}

    write_cells(out, [fake_result("none", s, 70.0, **rotation(10.0, 0.1 * s)) for s in range(3)])
    write_cells(out, [fake_result("ser", s, 70.0, layer=2, **rotation(10.0 + s, 0.1 * s + 0.2)) for s in range(3)])
    table = write_reports(out, title="rot")["markdown"].read_text()
    assert "| rel. pose R² (map) | Δ rel. pose R² (map) |" in table and "3D-rotation probes" in table
    ser = next(line for line in table.splitlines() if line.startswith("| moco | ser |"))
    assert "**+0.200 [+0.200, +0.200]**" in ser  # R² difference: 0.2 for every seed
    assert "+1.00 [−1.48, +3.48] n.s." in ser  # identity differences 0, 1, 2 → t-interval with 2 df
    rows = rows_from_results(load_results(out))
    assert rows[0]["rot_map_source"] == "layer-2 map" and rows[0]["rot_map_identity"] == 15.0


def test_no_rotation_columns_without_rotation_results(tmp_path: Path) -> None:
    table = write_reports(three_seed_bench(tmp_path), title="t")["markdown"].read_text()
    assert "pose R²" not in table and "3D-rotation" not in table


def test_forest_plot_shows_only_metrics_with_paired_differences(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    write_cells(out, [fake_result("none", s, 75.0, robustness=None) for s in range(2)])
    write_cells(out, [fake_result("ser", s, 76.0 + s, layer=2, robustness=None) for s in range(2)])
    rows = rows_from_results(load_results(out))
    methods = [s for s in summarize(rows) if not s.is_baseline]
    shown = forest_metrics(rows, methods)
    assert "top1" in shown and "robustness_mean" not in shown  # robustness was not evaluated: no empty panel
    assert (write_reports(out)["paired_differences"]).stat().st_size > 0
