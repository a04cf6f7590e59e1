"""Loading a trained run's backbone, and its evaluations.

Evaluations read the frozen online backbone of the latest checkpoint (built alone: no heads, losses or teacher)
and write ``eval/<kind>.json`` into the run directory, so ``equireg bench`` and the demo summary can collect them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from equireg.backbones import Backbone
from equireg.config import Config, ConfigError, resolve_config
from equireg.data.splits import Splits, load_splits
from equireg.engine.checkpoint import CheckpointManager
from equireg.recipe import build_backbone


@dataclass
class LoadedRun:
    cfg: Config
    backbone: Backbone
    run_dir: Path
    step: int


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a run's online backbone from its ``config.yaml`` and load it from the latest checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); train one with `equireg train`")
    cfg = resolve_config(run_dir / "config.yaml")
    latest = CheckpointManager(run_dir / "checkpoints").load_latest()
    if latest is None:
        raise ConfigError(f"{run_dir} has no checkpoint yet")
    backbone = build_backbone(cfg)
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in latest["recipe"].items() if k.startswith(prefix)})
    backbone.to(device).eval()
    return LoadedRun(cfg, backbone, run_dir, int(latest["step"]))


def _amp(cfg: Config) -> torch.dtype | None:
    return torch.bfloat16 if cfg.train.precision == "bf16" else None


def _save(run: LoadedRun, kind: str, result: Any) -> None:
    out = run.run_dir / "eval"
    out.mkdir(exist_ok=True)
    (out / f"{kind}.json").write_text(json.dumps({"step": run.step, **result.to_dict()}, indent=2))


def evaluate_linear(run: LoadedRun, splits: Splits | None = None, save: bool = True) -> Any:
    """Linear probe on frozen embeddings (top-1/top-5); also returns the fitted classifier."""
    from equireg.evaluation import extract_features, linear_probe

    splits = splits or load_splits(run.cfg)
    e = run.cfg.eval
    backbone = run.backbone
    bs = e.batch_size
    tr = extract_features(backbone, splits.probe_train.batches(bs, shuffle=False, drop_last=False), amp_dtype=_amp(run.cfg))
    te = extract_features(backbone, splits.test.batches(bs, shuffle=False, drop_last=False), amp_dtype=_amp(run.cfg))
    result = linear_probe(*tr, *te, epochs=e.probe_epochs, lr=e.probe_lr, optimizer=e.probe_optimizer,
                          num_classes=splits.test.num_classes, seed=run.cfg.train.seed)
    if save:
        _save(run, "linear", result)
    return result


def evaluate_knn(run: LoadedRun, splits: Splits | None = None, save: bool = True) -> Any:
    from equireg.evaluation import extract_features, knn_classify

    splits = splits or load_splits(run.cfg)
    bs = run.cfg.eval.batch_size
    backbone = run.backbone
    tr = extract_features(backbone, splits.probe_train.batches(bs, shuffle=False, drop_last=False), amp_dtype=_amp(run.cfg))
    te = extract_features(backbone, splits.test.batches(bs, shuffle=False, drop_last=False), amp_dtype=_amp(run.cfg))
    result = knn_classify(*tr, *te, k=run.cfg.eval.knn_k, num_classes=splits.test.num_classes)
    if save:
        _save(run, "knn", result)
    return result


def evaluate_equivariance(
    run: LoadedRun, splits: Splits | None = None, group: str | None = None, layer: int | str | None = None,
    save: bool = True,
) -> Any:
    """Equivariance score per element kind at the split layer (``layer``: another layer, or ``"fixed"`` for the
    place shared by every run, scored with :func:`comparable_elements`), and invariance at the final embedding."""
    from equireg.evaluation import equivariance_score
    from equireg.evaluation.equivariance import FIXED, comparable_elements
    from equireg.groups import create_group

    splits = splits or load_splits(run.cfg)
    cfg = run.cfg
    if group is not None:
        g = create_group(group)
    elif cfg.equiv.group == "p4m":
        g = create_group("p4m*scale")  # report rotation, flip and scale even when training used p4m only
    else:
        g = create_group(cfg.equiv.group, **cfg.equiv.group_kwargs)
    n = min(cfg.eval.equiv_images, len(splits.test))
    images = splits.test.subset(n, seed=3).batches(cfg.eval.batch_size, shuffle=False, drop_last=False)
    layer = layer or run.backbone.split_layer
    elements = comparable_elements(g) if layer == FIXED else None
    result = equivariance_score(run.backbone, images, g, layer=layer, elements=elements, amp_dtype=None, max_images=n)
    if save:
        _save(run, "equivariance-fixed" if layer == FIXED else "equivariance", result)
    return result


def evaluate_robustness(run: LoadedRun, splits: Splits | None = None, probe: Any = None, save: bool = True) -> Any:
    """Linear-probe accuracy under corruptions (noise, blur, contrast, pixelation, rotation; severities 1-5)."""
    from equireg.evaluation import DEFAULT_CORRUPTIONS, robustness

    splits = splits or load_splits(run.cfg)
    probe = probe or evaluate_linear(run, splits, save=save)
    e = run.cfg.eval
    result = robustness(
        run.backbone, probe.classifier, splits.test.batches(e.batch_size, shuffle=False, drop_last=False),
        corruptions=e.robustness_corruptions or DEFAULT_CORRUPTIONS, severities=e.robustness_severities,
        amp_dtype=_amp(run.cfg), seed=run.cfg.train.seed,
    )
    if save:
        _save(run, "robustness", result)
    return result
