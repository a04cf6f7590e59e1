"""Export a trained backbone as a timm checkpoint, so it can leave equireg for detection, fine-tuning, ...

The checkpoint holds the state dict of the timm model inside the backbone wrapper (``ViTBackbone.vit``,
``TimmCNNBackbone.model``) under timm's own key names; equireg's extra norms for the equivariance loss are left out,
since they do not feed the embedding. Two kinds of backbone are stock timm models and load with timm alone:

* a ViT with ``cls_position="input"`` (or ``"after_equiv"`` at the last layer, where the [CLS] enters at the input
  without a positional slot: timm's ``no_embed_class=True``), and
* a CNN with its own stem.

Two are not: SER's late-[CLS] ViT (the [CLS] joins after block k) loads into :class:`LateClsVisionTransformer`, a
timm ``VisionTransformer`` subclass with the same keys, and a ResNet with ``stem="cifar"`` needs the stem swapped
before loading. :func:`create_timm_model` rebuilds either from the file's metadata.

Every export is checked before it is kept: the model rebuilt from the written file must give the backbone's
embedding on a test batch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import equireg
import timm
from timm.layers import resample_abs_pos_embed
from timm.models._features import feature_take_indices
from timm.models.vision_transformer import VisionTransformer

from equireg.backbones.vit import POS_RESAMPLES, resample_pos_official

EXPORT_FORMATS = ("timm",)
CONTAINERS = {".safetensors": "safetensors", ".pth": "torch", ".pt": "torch"}
METADATA_FORMAT = "equireg-timm/1"


class ExportError(ValueError):
    """A backbone or destination that cannot be exported (the message says why)."""


class LateClsVisionTransformer(VisionTransformer):
    """timm's ViT with SER's late [CLS]: blocks 1..k see only patch tokens (whose positional embedding has no
    [CLS] slot) and the [CLS] joins at position 0 before block k+1. Same state-dict keys as ``VisionTransformer``
    built with ``class_token=True, no_embed_class=True``; ``forward``, ``forward_features``, ``forward_head`` and
    ``forward_intermediates`` behave as timm's, with the [CLS] where SER puts it."""

    cls_insert_after: int
    pos_resample: str

    def __init__(self, *args: Any, cls_insert_after: int, pos_resample: str = "official", **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "class_token": True, "no_embed_class": True})
        self._set_insertion(cls_insert_after, pos_resample)

    @classmethod
    def from_timm(cls, model_name: str, cls_insert_after: int, pos_resample: str = "official",
                  **kwargs: Any) -> LateClsVisionTransformer:
        """Build ``model_name`` through timm (its per-name defaults: depth, width, patch, ...) as this class.

        timm's model entry points hard-wire ``VisionTransformer``; the instance is re-typed to this subclass, which
        adds no parameters or buffers, so the module tree and state-dict keys stay timm's."""
        model = timm.create_model(model_name, pretrained=False, **{**kwargs, "class_token": True,
                                                                   "no_embed_class": True})
        if type(model) is not VisionTransformer:
            raise ExportError(f"{model_name!r} builds {type(model).__name__}, not a plain VisionTransformer")
        model.__class__ = cls
        model._set_insertion(cls_insert_after, pos_resample)  # type: ignore[attr-defined]
        return model  # type: ignore[return-value]

    def _set_insertion(self, cls_insert_after: int, pos_resample: str) -> None:
        if not 1 <= cls_insert_after < len(self.blocks):
            raise ValueError(f"cls_insert_after must be in 1..{len(self.blocks) - 1}, got {cls_insert_after}")
        if pos_resample not in POS_RESAMPLES:
            raise ValueError(f"pos_resample must be one of {POS_RESAMPLES}, got {pos_resample!r}")
        self.cls_insert_after, self.pos_resample = cls_insert_after, pos_resample
        self.blocks[cls_insert_after].register_forward_pre_hook(self._prepend_cls)

    def _prepend_cls(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        tokens = args[0]
        return (torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1), *args[1:])

    def _pos_embed(self, x: Tensor) -> Tensor:
        """Patch tokens plus their positions, resampled as equireg's backbone does on other grids; the [CLS]
        joins later (the hook on block k+1)."""
        if x.ndim == 3:  # a fixed image size: the native grid
            return self.pos_drop(x + self.pos_embed)
        batch, height, width, channels = x.shape  # dynamic_img_size: (B, H, W, C)
        native = tuple(self.patch_embed.grid_size)
        if self.pos_resample == "timm":
            pos = resample_abs_pos_embed(self.pos_embed, new_size=(height, width), old_size=native,
                                         num_prefix_tokens=0)
        else:
            pos = resample_pos_official(self.pos_embed, native, (height, width))
        return self.pos_drop(x.reshape(batch, height * width, channels) + pos)

    def forward_intermediates(  # type: ignore[override]
        self, x: Tensor, indices: int | list[int] | None = None, return_prefix_tokens: bool = False,
        norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
        **unsupported: Any,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's contract, with maps before the insertion point carrying no [CLS] to strip."""
        if return_prefix_tokens or any(unsupported.values()) or output_fmt not in ("NCHW", "NLC"):
            raise NotImplementedError("LateClsVisionTransformer.forward_intermediates supports indices, norm, "
                                      "stop_early, output_fmt (NCHW/NLC) and intermediates_only")
        take, max_index = feature_take_indices(len(self.blocks), indices)
        batch, _, height, width = x.shape
        grid = self.patch_embed.dynamic_feat_size((height, width))
        tokens = self.norm_pre(self._pos_embed(self.patch_embed(x)))
        maps = []
        for i, block in enumerate(self.blocks[: max_index + 1] if stop_early else self.blocks):
            tokens = block(tokens)
            if i in take:
                y = self.norm(tokens) if norm else tokens
                y = y[:, 1:] if i >= self.cls_insert_after else y
                maps.append(y.reshape(batch, *grid, -1).permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW"
                            else y)
        return maps if intermediates_only else (self.norm(tokens), maps)


@dataclass
class TimmExport:
    """What a timm user needs: the model name and kwargs, the weights, and whether stock timm can load them."""

    model_name: str
    kwargs: dict[str, Any]
    state_dict: dict[str, Tensor]
    cls_insert_after: int = 0  # ViT: blocks run before the [CLS] joins (0 = at the input)
    stem: str | None = None  # CNN: "cifar" needs the stem swapped before loading
    pos_resample: str | None = None  # ViT: how positions are resampled on a grid other than the native one

    @property
    def stock_timm(self) -> bool:
        return self.cls_insert_after == 0 and self.stem != "cifar"


def timm_export(backbone: nn.Module) -> TimmExport:
    """The timm model inside an equireg ViT or CNN backbone, as a name, kwargs and a state dict."""
    from equireg.backbones.cnn import TimmCNNBackbone
    from equireg.backbones.vit import ViTBackbone

    if isinstance(backbone, ViTBackbone):
        inner = backbone.vit
        extra = {"cls_insert_after": backbone.cls_insert_after, "pos_resample": backbone.pos_resample}
    elif isinstance(backbone, TimmCNNBackbone):
        inner, extra = backbone.model, {"stem": backbone.stem}
    else:
        raise ExportError(f"{type(backbone).__name__} is not one of equireg's timm backbones (ViT or CNN wrapper); "
                          "export its state_dict() yourself")
    kwargs = dict(backbone.timm_kwargs)
    try:
        kwargs = json.loads(json.dumps(kwargs))  # tuples become lists, which timm accepts
    except TypeError as exc:
        raise ExportError(f"the backbone's timm kwargs cannot be recorded ({exc})") from None
    state = {k: v.detach().to("cpu").contiguous() for k, v in inner.state_dict().items()}
    return TimmExport(backbone.timm_name, kwargs, state, **extra)


def build_timm_model(model_name: str, kwargs: dict[str, Any], *, cls_insert_after: int = 0,
                     stem: str | None = None, pos_resample: str | None = None) -> nn.Module:
    """The (untrained) timm module an export loads into."""
    if cls_insert_after:
        return LateClsVisionTransformer.from_timm(model_name, cls_insert_after, pos_resample or "official", **kwargs)
    model = timm.create_model(model_name, pretrained=False, **kwargs)
    if stem == "cifar":
        from equireg.backbones.cnn import _cifar_stem

        _cifar_stem(model, int(kwargs.get("in_chans", 3)))
    return model


def container_of(path: Path) -> str:
    """``safetensors`` or ``torch``, from the file name's suffix."""
    if path.suffix not in CONTAINERS:
        raise ExportError(f"{path}: unknown file type {path.suffix or '(none)'!r}; use one of {', '.join(CONTAINERS)}")
    return CONTAINERS[path.suffix]


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored with an export (safetensors header, or the ``metadata`` entry of a .pth)."""
    path = Path(path)
    if container_of(path) == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    return dict(torch.load(path, map_location="cpu", weights_only=True).get("metadata", {}))


def _load_weights(path: Path) -> dict[str, Tensor]:
    if container_of(path) == "safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def create_timm_model(path: str | Path) -> nn.Module:
    """Rebuild and load an ``equireg export`` file in eval mode, including the kinds stock timm cannot build
    (late [CLS], CIFAR stem). Its ``forward`` gives the equireg backbone's embedding."""
    meta = read_metadata(path)
    if meta.get("format") != METADATA_FORMAT:
        raise ExportError(f"{path} is not an equireg timm export (metadata format {meta.get('format')!r})")
    model = build_timm_model(meta["timm_model"], json.loads(meta["timm_kwargs"]),
                             cls_insert_after=int(meta["cls_insert_after"]), stem=meta.get("stem") or None,
                             pos_resample=meta.get("pos_resample") or None)
    model.load_state_dict(_load_weights(Path(path)), strict=True)
    return model.eval()


def _python_value(value: Any) -> str:
    return repr(tuple(value)) if isinstance(value, list) else repr(value)


def load_snippet(export: TimmExport, path: str | Path) -> str:
    """The exact Python that loads ``path``: timm alone for stock models, equireg's loader otherwise."""
    if not export.stock_timm:
        why = (f"the [CLS] joins after block {export.cls_insert_after}" if export.cls_insert_after
               else "a ResNet with the CIFAR stem (3x3 stride-1 conv, no max-pool)")
        return (f"# not a stock timm model ({why}): equireg rebuilds it as a timm module\n"
                f"from equireg.export import create_timm_model\n"
                f"model = create_timm_model({str(path)!r})  # model(x) = the backbone's embedding")
    args = ", ".join(f"{k}={_python_value(v)}" for k, v in export.kwargs.items())
    return (f"import timm\n"
            f"model = timm.create_model({export.model_name!r}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file={str(path)!r}), {args})")


def save_export(export: TimmExport, path: str | Path, metadata: dict[str, Any]) -> dict[str, str]:
    """Write the weights and string metadata (the container follows the suffix), atomically."""
    path = Path(path)
    container = container_of(path)
    meta = {"format": METADATA_FORMAT, "equireg_version": equireg.__version__, "timm_version": timm.__version__,
            "timm_model": export.model_name, "timm_kwargs": json.dumps(export.kwargs),
            "cls_insert_after": str(export.cls_insert_after), "stem": export.stem or "",
            "pos_resample": export.pos_resample or "",
            "loader": "timm" if export.stock_timm else "equireg.export.create_timm_model",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if container == "safetensors":
            from safetensors.torch import save_file

            save_file(export.state_dict, str(tmp), metadata=meta)
        else:
            torch.save({"state_dict": export.state_dict, "metadata": meta}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def check_export(backbone: nn.Module, path: Path, image_size: int | tuple[int, int]) -> float:
    """Largest difference between the backbone's embedding and the exported model's output on a random batch,
    relative to the embedding's largest value (0 = identical)."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    images = torch.randn(2, backbone.in_chans, *size, generator=torch.Generator().manual_seed(0))
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        expected = backbone(images.to(next(backbone.parameters()).device)).float().cpu()
        got = create_timm_model(path)(images).float()
    backbone.train(was_training)
    return float((expected - got).abs().max() / expected.abs().max().clamp_min(1e-12))


@dataclass
class ExportResult:
    path: Path
    snippet: str
    metadata: dict[str, str]
    relative_error: float


def load_run_backbone(run_dir: str | Path) -> tuple[nn.Module, Any, int]:
    """The online backbone of a run's latest checkpoint, its config and step (the one place export loads a run)."""
    from equireg.pipeline import load_run

    run = load_run(run_dir)
    return run.backbone, run.cfg, run.step


def run_summary(cfg: Any, step: int) -> dict[str, Any]:
    """What an export records about the run it came from."""
    return {"dataset": cfg.data.name, "image_size": cfg.data.image_size, "backbone": cfg.backbone.name,
            "backbone_kwargs": cfg.backbone.kwargs, "objective": cfg.objective.name, "equiv_loss": cfg.equiv.loss,
            "group": cfg.equiv.group, "b2_ratio": cfg.equiv.b2_ratio, "steps": cfg.optim.steps,
            "batch_size": cfg.optim.batch_size, "seed": cfg.train.seed, "checkpoint_step": step}


def _check_destination(out: Path, fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; available: {', '.join(EXPORT_FORMATS)}")
    container_of(out)
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give a file name")
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: the directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ExportError(f"--out {out}: not writable")


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "timm", tolerance: float = 1e-4) -> ExportResult:
    """Write a run's online backbone to ``out`` as a timm checkpoint, check that it reproduces the backbone's
    embedding, and return the Python that loads it. Nothing is left at ``out`` when anything fails."""
    out = Path(out)
    _check_destination(out, fmt)
    backbone, cfg, step = load_run_backbone(run_dir)
    export = timm_export(backbone)
    split = getattr(backbone, "split_layer", None)
    metadata = {"run": run_summary(cfg, step), "split_layer": str(split),
                "cls_position": getattr(backbone, "cls_position", "n/a")}
    try:
        meta = save_export(export, out, metadata)
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    try:
        native = backbone.img_size if getattr(backbone, "family", "") == "vit" else cfg.data.image_size
        error = check_export(backbone, out, native)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if not error <= tolerance:
        out.unlink(missing_ok=True)
        raise ExportError(f"the exported model does not reproduce the backbone's embedding (relative error "
                          f"{error:.2e}); nothing written")
    return ExportResult(out, load_snippet(export, out), meta, error)
