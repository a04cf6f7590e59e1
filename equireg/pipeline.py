"""Glue between the pieces: the dataset splits of a run, loading a trained run, and its evaluations.

Evaluations read the frozen online backbone of the latest checkpoint and write ``eval/<kind>.json`` into the
run directory, so ``equireg bench`` and the demo summary can collect them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from equireg.config import Config, ConfigError, resolve_config
from equireg.data import ImageDataset, create_dataset
from equireg.engine.checkpoint import CheckpointManager
from equireg.recipe import SSLRecipe, build_recipe


@dataclass
class Splits:
    """Pretraining images, the probe's training images (disjoint from them) and the test set."""

    pretrain: ImageDataset
    probe_train: ImageDataset
    test: ImageDataset


def load_splits(cfg: Config) -> Splits:
    d = cfg.data
    kwargs = dict(d.kwargs)
    train = create_dataset(d.name, split="train", root=d.root, image_size=d.image_size, **kwargs)
    test = create_dataset(d.name, split="test", root=d.root, image_size=d.image_size, **kwargs)
    if d.train_subset is not None and d.train_subset < len(train):
        pretrain, rest = train.split(d.train_subset, seed=cfg.train.seed)
    else:
        pretrain, rest = train, train
    probe_train = rest if d.probe_train_size is None else rest.subset(min(d.probe_train_size, len(rest)), seed=1)
    if d.test_size is not None and d.test_size < len(test):
        test = test.subset(d.test_size, seed=2)
    return Splits(pretrain, probe_train, test)


@dataclass
class LoadedRun:
    cfg: Config
    recipe: SSLRecipe
    run_dir: Path
    step: int


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a run's recipe from its ``config.yaml`` and load the latest checkpoint's weights."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); train one with `equireg train`")
    cfg = resolve_config(run_dir / "config.yaml")
    latest = CheckpointManager(run_dir / "checkpoints").load_latest()
    if latest is None:
        raise ConfigError(f"{run_dir} has no checkpoint yet")
    recipe = build_recipe(cfg)
    recipe.load_state_dict(latest["recipe"])
    recipe.to(device).eval()
    return LoadedRun(cfg, recipe, run_dir, int(latest["step"]))


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
    backbone = run.recipe.backbone
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
    backbone = run.recipe.backbone
    tr = extract_features(backbone, splits.probe_train.batches(bs, shuffle=False, drop_last=False), amp_dtype=_amp(run.cfg))
    te = extract_features(backbone, splits.test.batches(bs, shuffle=False, drop_last=False), amp_dtype=_amp(run.cfg))
    result = knn_classify(*tr, *te, k=run.cfg.eval.knn_k, num_classes=splits.test.num_classes)
    if save:
        _save(run, "knn", result)
    return result


def evaluate_equivariance(
    run: LoadedRun, splits: Splits | None = None, group: str | None = None, layer: int | None = None, save: bool = True
) -> Any:
    """Equivariance score per element kind at the split layer (and invariance at the final embedding)."""
    from equireg.evaluation import equivariance_score
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
    layer = layer or run.recipe.backbone.split_layer
    result = equivariance_score(run.recipe.backbone, images, g, layer=layer, amp_dtype=None, max_images=n)
    if save:
        _save(run, "equivariance", result)
    return result


def evaluate_robustness(run: LoadedRun, splits: Splits | None = None, probe: Any = None, save: bool = True) -> Any:
    """Linear-probe accuracy under corruptions (noise, blur, contrast, pixelation, rotation; severities 1-5)."""
    from equireg.evaluation import DEFAULT_CORRUPTIONS, robustness

    splits = splits or load_splits(run.cfg)
    probe = probe or evaluate_linear(run, splits, save=save)
    e = run.cfg.eval
    result = robustness(
        run.recipe.backbone, probe.classifier, splits.test.batches(e.batch_size, shuffle=False, drop_last=False),
        corruptions=e.robustness_corruptions or DEFAULT_CORRUPTIONS, severities=e.robustness_severities,
        amp_dtype=_amp(run.cfg), seed=run.cfg.train.seed,
    )
    if save:
        _save(run, "robustness", result)
    return result
