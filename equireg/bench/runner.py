"""Run a bench spec cell by cell: train, evaluate, write ``result.json``; safe to kill and re-run.

A cell is finished only when ``cells/<id>/result.json`` exists (written atomically, last). On a re-run:

* finished cells are skipped (a finished baseline whose spec now sweeps more layers is only scored for
  equivariance at the new layers);
* a cell with a checkpoint but no result resumes training from its latest checkpoint (checkpoints are atomic, so
  a cell killed mid-write resumes from the previous one), or, when training had completed, only re-evaluates;
* a cell that raised writes ``error.txt`` and the runner moves on; it is retried on the next run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from equireg.bench.spec import BenchSpec, Cell, expand_cells
from equireg.config import Config

RESULT_FILE = "result.json"


@dataclass
class BenchSummary:
    out_dir: Path
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)


RECIPE_KEYS = ("cls_position", "view_policy", "views_per_image", "crop_min", "equiv_weight", "split_layer",
               "num_layers", "params_total", "params_backbone", "params_equiv")
"""What each run's train_summary.json records about its recipe (SSLRecipe.describe) and every result row repeats."""


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class _SplitCache:
    """Dataset splits shared by cells with the same data section and seed (loading them is not free)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, cfg: Config) -> Any:
        from equireg.data.splits import load_splits

        key = cfg.data.model_dump_json() + f"|{cfg.train.seed}"
        if key not in self._cache:
            self._cache[key] = load_splits(cfg)
        return self._cache[key]


def _train(cfg: Config, splits: Any, progress: bool) -> dict[str, Any]:
    """Train (or resume) the cell's run; returns its train summary."""
    from equireg.engine import Trainer
    from equireg.engine.checkpoint import CheckpointManager

    run_dir = Path(cfg.train.run_dir)
    latest = CheckpointManager(run_dir / "checkpoints").latest()
    summary_file = run_dir / "train_summary.json"
    if latest is not None and summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if int(summary.get("steps", -1)) >= cfg.optim.steps:
            return summary  # trained; a previous attempt died while evaluating
    trainer = Trainer(cfg, resume=latest is not None, progress=progress, dataset=splits.pretrain)
    result = trainer.fit()
    summary = json.loads(summary_file.read_text())
    summary["resumed_from"] = result.resumed_from
    return summary


def _evaluate(cell: Cell, spec: BenchSpec, cfg: Config, splits: Any) -> dict[str, Any]:
    from equireg.evaluation.equivariance import FIXED
    from equireg.pipeline import evaluate_equivariance, evaluate_linear, evaluate_robustness, load_run

    run = load_run(cfg.train.run_dir, device=_device(cfg))
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    probe = None
    if "linear" in spec.evaluate or "robustness" in spec.evaluate:
        probe = evaluate_linear(run, splits)
        out["linear"] = {"top1": probe.top1, "top5": probe.top5}
    if "robustness" in spec.evaluate:
        rob = evaluate_robustness(run, splits, probe=probe)
        out["robustness"] = {"mean": rob.mean_corruption_accuracy, "per_corruption": rob.mean_per_corruption,
                             "clean_top1": rob.clean_top1}
    if "equivariance" in spec.evaluate:
        scores = {}
        for layer in cell.eval_layers:
            res = evaluate_equivariance(run, splits, group=spec.equivariance_group, layer=layer, save=False)
            scores[str(res.layer)] = {"map": res.map_scores, "embedding": res.embedding_scores}
        out["equivariance"] = scores
        fixed = evaluate_equivariance(run, splits, group=spec.equivariance_group, layer=FIXED, save=False)
        out["equivariance_fixed"] = {"map": fixed.map_scores, "embedding": fixed.embedding_scores,
                                     "layer": fixed.fixed_layer or "final"}
    if "rotation" in spec.evaluate:
        from equireg.pipeline import evaluate_rotation

        rotation = evaluate_rotation(run, spec.rotation_data_root)
        out["rotation"] = {name: {k: v for k, v in s.to_dict().items() if k != "chosen"}
                           for name, s in rotation.scores.items()}
    out["eval_seconds"] = time.perf_counter() - t0
    return out


def _check_rotation_data(cfg: Config, spec: BenchSpec) -> None:
    """``evaluate: [rotation]`` needs a rot3d folder: the spec's ``rotation_data_root`` or the cell's own data."""
    from equireg.config import ConfigError
    from equireg.evaluation.rotation import rotation_data_root

    try:
        rotation_data_root(cfg.data.name, cfg.data.root, spec.rotation_data_root, hint="set rotation_data_root")
    except FileNotFoundError as exc:
        raise ConfigError(f"bench spec evaluates rotation: {exc}") from None


def _device(cfg: Config) -> torch.device:
    from equireg.engine.trainer import resolve_device

    return resolve_device(cfg.train.device)


def run_cell(cell: Cell, spec: BenchSpec, out_dir: Path, splits_cache: _SplitCache | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one cell and write its ``result.json`` (returns it)."""
    cfg = cell.config(spec, out_dir)
    run_dir = Path(cfg.train.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").unlink(missing_ok=True)
    splits = (splits_cache or _SplitCache()).get(cfg)
    t0 = time.perf_counter()
    train = _train(cfg, splits, progress)
    train_s = time.perf_counter() - t0
    result = {
        "cell": cell.id, "method": cell.method.label, "loss": cell.method.loss, "objective": cell.objective.name,
        "layer": cell.layer, "group": cell.group, "seed": cell.seed, "steps": cfg.optim.steps,
        "batch_size": cfg.optim.batch_size, "backbone": cfg.backbone.name, "dataset": cfg.data.name,
        "train": {"wall_seconds": train.get("wall_seconds"), "images_per_second": train.get("images_per_second"),
                  "final_loss": train.get("final_loss"), "resumed_from": train.get("resumed_from", 0),
                  "this_attempt_seconds": train_s},
        **{key: train.get(key) for key in RECIPE_KEYS},
        **_evaluate(cell, spec, cfg, splits),
    }
    write_json_atomic(run_dir / RESULT_FILE, result)
    return result


def _top_up_equivariance(cell: Cell, spec: BenchSpec, out_dir: Path, splits: _SplitCache) -> list[int]:
    """For a finished cell whose spec now sweeps more layers (the baseline), score only the missing layers."""
    from equireg.pipeline import evaluate_equivariance, load_run

    path = out_dir / "cells" / cell.id / RESULT_FILE
    result = json.loads(path.read_text())
    have = result.get("equivariance")
    if "equivariance" not in spec.evaluate or have is None:
        return []
    missing = [k for k in cell.eval_layers if k is not None and str(k) not in have]
    if not missing:
        return []
    cfg = cell.config(spec, out_dir)
    run = load_run(cfg.train.run_dir, device=_device(cfg))
    for layer in missing:
        res = evaluate_equivariance(run, splits.get(cfg), group=spec.equivariance_group, layer=layer, save=False)
        have[str(res.layer)] = {"map": res.map_scores, "embedding": res.embedding_scores}
    write_json_atomic(path, result)
    return missing


def run_bench(
    spec: BenchSpec,
    out_dir: str | Path | None = None,
    *,
    only: Callable[[Cell], bool] | None = None,
    max_minutes: float | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    write_reports: bool = True,
) -> BenchSummary:
    """Run every unfinished cell of ``spec`` in order, then write the CSV, markdown table and plots.

    ``max_minutes`` stops *starting* new cells once that much time has passed (a started cell runs to its end).
    """
    out = Path(out_dir or spec.out_dir or f"runs/bench-{spec.name}")
    cells = [c for c in expand_cells(spec) if only is None or only(c)]
    for cell in cells:  # validate every cell's config before spending time (or leaving a folder) on any
        cfg = cell.config(spec, out)
        if "rotation" in spec.evaluate:
            _check_rotation_data(cfg, spec)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
    summary = BenchSummary(out)
    splits = _SplitCache()
    start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        cell_dir = out / "cells" / cell.id
        if (cell_dir / RESULT_FILE).is_file():
            summary.skipped.append(cell.id)
            added = _top_up_equivariance(cell, spec, out, splits)
            log(f"[{i}/{len(cells)}] {cell.id}: finished before, skipped"
                + (f" (scored equivariance at the new layers {added})" if added else ""))
            continue
        if max_minutes is not None and (time.perf_counter() - start) / 60 > max_minutes:
            summary.not_started.append(cell.id)
            continue
        log(f"[{i}/{len(cells)}] {cell.id}: running")
        t0 = time.perf_counter()
        try:
            result = run_cell(cell, spec, out, splits, progress)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the matrix
            cell_dir.mkdir(parents=True, exist_ok=True)
            (cell_dir / "error.txt").write_text(traceback.format_exc())
            summary.failed[cell.id] = f"{type(exc).__name__}: {exc}"
            log(f"[{i}/{len(cells)}] {cell.id}: FAILED ({type(exc).__name__}: {exc}); see {cell_dir}/error.txt")
            continue
        summary.finished.append(cell.id)
        top1 = result.get("linear", {}).get("top1")
        log(f"[{i}/{len(cells)}] {cell.id}: done in {time.perf_counter() - t0:.0f} s"
            + (f", linear top-1 {top1:.2f}" if top1 is not None else ""))
    if write_reports:
        from equireg.bench.report import write_reports as _write

        _write(out, title=spec.name, cells=cells, baseline=spec.baseline)
    return summary

