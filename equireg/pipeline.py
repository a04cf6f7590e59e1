"""Loading a trained run's backbone, and its evaluations.

Evaluations read the frozen online backbone of the latest checkpoint (built alone: no heads, losses or teacher)
and write ``eval/<kind>.json`` into the run directory, so ``equireg bench`` and the demo summary can collect them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from equireg.backbones import Backbone
from equireg.config import Config, ConfigError, resolve_config
from equireg.data.splits import Splits, load_splits
from equireg.engine.checkpoint import CheckpointManager
from equireg.engine.run_config import recorded_settings
from equireg.engine.trainer import log_eval_scalars
from equireg.recipe import build_backbone


@dataclass
class LoadedRun:
    cfg: Config
    backbone: Backbone
    run_dir: Path
    step: int


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a run's online backbone from its settings in force (``config.yaml`` with the changes its resumes
    recorded) and load it from the latest checkpoint."""
    run_dir = Path(run_dir)
    cfg = run_settings(run_dir)
    latest = CheckpointManager(run_dir / "checkpoints").load_latest()
    if latest is None:
        raise ConfigError(f"{run_dir} has no checkpoint yet")
    backbone = build_backbone(cfg)
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in latest["recipe"].items() if k.startswith(prefix)})
    backbone.to(device).eval()
    return LoadedRun(cfg, backbone, run_dir, int(latest["step"]))


def run_settings(run_dir: str | Path) -> Config:
    """The settings in force in ``run_dir``: ``config.yaml`` with the changes its resumes recorded."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); train one with `equireg train`")
    return resolve_config(recorded_settings(run_dir)[0])


def _amp(cfg: Config) -> torch.dtype | None:
    return torch.bfloat16 if cfg.train.precision == "bf16" else None


def _device(run: LoadedRun) -> torch.device:
    """Where the run's backbone was loaded: every evaluation step runs there."""
    from equireg.evaluation._common import module_device

    return module_device(run.backbone)


def eval_device(cfg: Config, device: str | None = None) -> torch.device:
    """Where evaluation runs: ``device``, else the run's ``train.device`` (``auto``: the GPU when there is one)."""
    from equireg.engine.trainer import resolve_device

    return resolve_device(device or cfg.train.device)


def _save(run: LoadedRun, kind: str, result: Any, splits: Splits | None = None) -> None:
    """``eval/<kind>.json``: the result, the step it evaluates and the data sizes it used (``splits``)."""
    out = run.run_dir / "eval"
    out.mkdir(exist_ok=True)
    record = {"step": run.step, **result.to_dict()}
    if splits is not None:
        record.update(data_sizes=splits.sizes(), data_clamped=splits.clamped)
    (out / f"{kind}.json").write_text(json.dumps(record, indent=2))
    log_eval_scalars(run.run_dir, kind, result.to_dict(), run.step)


HEAD_FILE = "linear_head.pt"


def _save_head(run: LoadedRun, protocol: str, head: torch.nn.Module, features: dict[str, Any], classes: Any) -> None:
    """The trained linear head, so that the transfer sets (ImageNet-C/-P/-R/-Sketch/-V2) can classify."""
    (run.run_dir / "eval").mkdir(exist_ok=True)
    state = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    torch.save({"protocol": protocol, "features": features, "state": state, "classes": list(classes), "step": run.step},
               run.run_dir / "eval" / HEAD_FILE)  # fmt: skip


def load_classifier(run: LoadedRun) -> tuple[torch.nn.Module, list[str]]:
    """Images -> logits from the run's backbone and its saved linear head, and the class names it predicts."""
    from equireg.evaluation import FrozenFeatures, ImageClassifier, LinearClassifier

    path = run.run_dir / "eval" / HEAD_FILE
    if not path.is_file():
        raise ConfigError(f"{run.run_dir} has no saved linear head ({path}); the transfer sets classify with it, "
                          f"so run `equireg eval linear {run.run_dir}` first")  # fmt: skip
    saved = torch.load(path, map_location="cpu", weights_only=True)
    state, backbone = saved["state"], run.backbone
    head: torch.nn.Module
    if saved["features"]["kind"] == "embedding":
        head, features = LinearClassifier(state["mean"], state["std"], state["linear.weight"].shape[0]), backbone
    else:
        head = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        features = FrozenFeatures(backbone, int(saved["features"].get("n_last_blocks", 1)))  # "pooled": a CNN
    head.load_state_dict(state)
    device = _device(run)
    return ImageClassifier(features, head).to(device).eval(), list(saved["classes"])


def evaluate_linear(
    run: LoadedRun, splits: Splits | None = None, save: bool = True, protocol: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:  # fmt: skip
    """Linear evaluation by ``eval.linear_protocol`` (or ``protocol``): ``probe`` fits a probe on precomputed
    embeddings (L-BFGS or AdamW, the small-data protocol), ``paper`` trains SGD heads on augmented crops
    (:func:`evaluate_linear_paper`). Saves ``eval/linear.json`` and the head; returns the result."""
    protocol = protocol or run.cfg.eval.linear_protocol
    if protocol == "paper":
        return evaluate_linear_paper(run, splits, save, log)
    if protocol != "probe":
        raise ValueError(f"linear protocol must be 'probe' or 'paper', got {protocol!r}")
    from equireg.evaluation import extract_features, linear_probe

    splits = splits or load_splits(run.cfg)
    e = run.cfg.eval
    backbone = run.backbone
    dev = _device(run)
    bs = e.batch_size
    tr = extract_features(backbone, splits.probe_train.batches(bs, shuffle=False, drop_last=False, device=dev), amp_dtype=_amp(run.cfg))
    te = extract_features(backbone, splits.test.batches(bs, shuffle=False, drop_last=False, device=dev), amp_dtype=_amp(run.cfg))
    result = linear_probe(*tr, *te, epochs=e.probe_epochs, lr=e.probe_lr, optimizer=e.probe_optimizer,
                          num_classes=splits.test.num_classes, seed=run.cfg.train.seed, device=dev)
    if save:
        _save(run, "linear", result, splits)
        _save_head(run, "probe", result.classifier, {"kind": "embedding"}, splits.test.classes)
    return result


def evaluate_linear_paper(
    run: LoadedRun, splits: Splits | None = None, save: bool = True, log: Callable[[str], None] | None = None
) -> Any:
    """The paper's protocol (methods.md 1.7): SGD heads for an lr sweep on frozen features (last 4 [CLS] for a
    ViT), RandomResizedCrop + flip training views, Resize + CenterCrop validation, streamed per batch."""
    from equireg.augment import CropConfig, PhotometricConfig, ViewAugmentation
    from equireg.data import CropSpec, epoch_generator
    from equireg.evaluation import FrozenFeatures, linear_eval

    splits = splits or load_splits(run.cfg)
    cfg, e = run.cfg, run.cfg.eval
    backbone = run.backbone
    dev = _device(run)
    train, size = splits.probe_train, cfg.data.image_size
    crop = ViewAugmentation(CropConfig(), PhotometricConfig.off(), output_size=size)

    def train_epoch(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        kw: dict[str, Any] = dict(shuffle=True, drop_last=False, seed=cfg.train.seed, epoch=epoch, device=dev)
        if train.cuts_crops:  # crops of the original files, cut by the loader
            yield from ((c.view1, y) for c, y in train.batches(e.batch_size, crops=CropSpec(size, num_views=1), **kw))
            return
        generator = epoch_generator(cfg.train.seed + 1, epoch)
        yield from ((crop(x, generator)[0], y) for x, y in train.batches(e.batch_size, **kw))

    def test_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return splits.test.batches(e.batch_size, shuffle=False, drop_last=False, device=dev)  # type: ignore[return-value]

    features = FrozenFeatures(backbone, e.linear_last_blocks)
    result = linear_eval(features, train_epoch, test_batches, splits.test.num_classes, epochs=e.linear_epochs,
                         batch_size=e.batch_size, lrs=e.linear_lrs, amp_dtype=_amp(cfg), seed=cfg.train.seed, log=log)  # fmt: skip
    if save:
        _save(run, "linear", result, splits)
        spec = {"kind": "last_blocks", "n_last_blocks": len(features.blocks)} if features.blocks else {"kind": "pooled"}
        _save_head(run, "paper", result.head, spec, splits.test.classes)
    return result


def evaluate_knn(run: LoadedRun, splits: Splits | None = None, save: bool = True) -> Any:
    from equireg.evaluation import extract_features, knn_classify

    splits = splits or load_splits(run.cfg)
    bs = run.cfg.eval.batch_size
    backbone = run.backbone
    dev = _device(run)
    tr = extract_features(backbone, splits.probe_train.batches(bs, shuffle=False, drop_last=False, device=dev), amp_dtype=_amp(run.cfg))
    te = extract_features(backbone, splits.test.batches(bs, shuffle=False, drop_last=False, device=dev), amp_dtype=_amp(run.cfg))
    # the similarity blocks run where the backbone is (the GPU, when there is one)
    result = knn_classify(tr[0].to(dev), tr[1].to(dev), te[0].to(dev), te[1].to(dev), k=run.cfg.eval.knn_k,
                          num_classes=splits.test.num_classes)  # fmt: skip
    if save:
        _save(run, "knn", result, splits)
    return result


def evaluate_equivariance(
    run: LoadedRun, splits: Splits | None = None, group: str | None = None, layer: int | str | None = None,
    save: bool = True, center: bool = False,
) -> Any:
    """Equivariance score per element kind at the split layer (``layer``: another layer, or ``"fixed"`` for the
    place shared by every run, scored with :func:`comparable_elements`), and invariance at the final embedding;
    ``center`` removes the batch-mean offset first (for maps whose raw cosines all sit near 1, e.g. ViT tokens);
    saved as ``eval/<equivariance_result_name(...)>.json``."""
    from equireg.evaluation import equivariance_score
    from equireg.evaluation.equivariance import FIXED, comparable_elements

    splits = splits or load_splits(run.cfg)
    cfg = run.cfg
    g = _scored_group(cfg, group)
    n = min(cfg.eval.equiv_images, len(splits.test))
    dev = _device(run)
    images = splits.test.subset(n, seed=3).batches(cfg.eval.batch_size, shuffle=False, drop_last=False, device=dev)
    at = layer or run.backbone.split_layer
    elements = comparable_elements(g) if at == FIXED else None
    result = equivariance_score(run.backbone, images, g, layer=at, elements=elements, amp_dtype=None, max_images=n,
                                center=center)
    if save:
        _save(run, equivariance_result_name(run, group, layer, center), result, splits)
    return result


def _scored_group(cfg: Config, group: str | None) -> Any:
    from equireg.groups import create_group

    if group is not None:
        return create_group(group)
    if cfg.equiv.group == "p4m":
        return create_group("p4m*scale")  # report rotation, flip and scale even when training used p4m only
    return create_group(cfg.equiv.group, **cfg.equiv.group_kwargs)


def equivariance_result_name(run: LoadedRun, group: str | None = None, layer: int | str | None = None,
                             center: bool = False) -> str:
    """``equivariance`` at the run's own group and layer (the score training's summary writes) and
    ``equivariance-fixed`` at the shared place; a score asked for another group or layer gets its own name,
    ``equivariance-<group>-L<k>`` (or ``-fixed``), and a centred one ends in ``-centered``, so it never
    overwrites those."""
    from equireg.evaluation.equivariance import FIXED

    suffix = "-centered" if center else ""
    if group is None:
        if layer is None:
            return "equivariance" + suffix
        if layer == FIXED:
            return "equivariance-fixed" + suffix
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", _scored_group(run.cfg, group).name)
    place = "fixed" if layer == FIXED else f"L{layer or run.backbone.split_layer}"
    return f"equivariance-{name}-{place}{suffix}"


def evaluate_robustness(run: LoadedRun, splits: Splits | None = None, probe: Any = None, save: bool = True) -> Any:
    """Linear-probe accuracy under corruptions (noise, blur, contrast, pixelation, rotation; severities 1-5)."""
    from equireg.evaluation import DEFAULT_CORRUPTIONS, robustness

    splits = splits or load_splits(run.cfg)
    # the classifier reads the embeddings: a probe result is reused, anything else (the paper protocol's heads read
    # other features) gets a probe fitted here, not saved, so the run's linear result stays that of its protocol
    if getattr(probe, "classifier", None) is None:
        probe = evaluate_linear(run, splits, save=False, protocol="probe")
    e = run.cfg.eval
    dev = _device(run)
    result = robustness(
        run.backbone, probe.classifier,
        splits.test.batches(e.batch_size, shuffle=False, drop_last=False, device=dev),
        corruptions=e.robustness_corruptions or DEFAULT_CORRUPTIONS, severities=e.robustness_severities,
        amp_dtype=_amp(run.cfg), seed=run.cfg.train.seed,
    )
    if save:
        _save(run, "robustness", result, splits)
    return result


def evaluate_rotation(
    run: LoadedRun, data_root: str | None = None, *, seed: int | None = None, layer: int | None = None,
    settings: Any = None, save: bool = True,
) -> Any:
    """Identity, absolute- and relative-rotation probes on a rot3d folder (``data_root``: default the run's own data
    when it trained on rot3d); writes ``RUN_DIR/eval/rotation.json``."""
    from equireg.data.rot3d import load_labels
    from equireg.evaluation.rotation import ProbeSettings, load_images, rotation_data_root, rotation_probes, split_features

    cfg = run.cfg
    root = rotation_data_root(cfg.data.name, cfg.data.root, data_root)
    labels = load_labels(root)
    images = load_images(labels.files(), cfg.data.image_size)
    features = split_features(run.backbone, images, layer, cfg.eval.batch_size, _amp(cfg))
    result = rotation_probes(features, labels.rotation, labels.object, labels.split,
                             seed=cfg.train.seed if seed is None else seed, settings=settings or ProbeSettings())
    result.data_root = root
    if save:
        _save(run, "rotation", result)
    return result


def evaluate_transfer(
    run: LoadedRun, name: str, root: str | Path, alexnet: dict[str, Any] | None = None, save: bool = True,
    log: Callable[[str], None] | None = None,
) -> Any:  # fmt: skip
    """A robustness or transfer set stored as a folder (``imagenet-c``, ``-p``, ``-r``, ``-sketch``, ``-v2``),
    classified by the run's saved linear head; saves ``eval/<name>.json``."""
    from equireg.evaluation import transfer

    classifier, classes = load_classifier(run)
    d = run.cfg.data
    settings = transfer.FolderSettings(d.image_size, run.cfg.eval.batch_size, amp_dtype=_amp(run.cfg))
    if name == "imagenet-c":
        result = transfer.imagenet_c(classifier, root, classes, settings, alexnet, log)
    elif name == "imagenet-p":
        result = transfer.imagenet_p(classifier, root, classes, settings, alexnet, log)
    else:
        ratio = float(d.kwargs.get("crop_ratio", 0.875))
        result = transfer.classification_set(name, classifier, root, classes, settings, crop_ratio=ratio)
    if save:
        _save(run, name, result)
    return result
