"""CNN backbone on any timm model with ``forward_intermediates`` (ResNets, ConvNeXt, RegNet, ...).

Layers are the model's stages (ResNet ``layer1..layer4``); a leading stride-2 stem level in timm's
``feature_info`` is not a stage and is skipped. ``stem="cifar"`` swaps a ResNet's strided stem for a
3x3 stride-1 convolution without max-pooling, so 32 px images keep a 32x32 map in stage 1.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch import Tensor, nn

import equireg  # noqa: F401  (installs the torchvision shim before timm is imported)
import timm
from timm.models.vision_transformer import VisionTransformer

from equireg.backbones.base import Backbone, LayerInfo, SplitOutput, layer_norm_no_affine

STEMS = ("imagenet", "cifar")
Stem = Literal["imagenet", "cifar"]
_FORCED_KWARGS = ("num_classes", "features_only", "pretrained")


def default_cnn_split_layer(strides: list[int]) -> int:
    """The stage at stride 8 unless that is the last stage (then the map would feed the embedding directly);
    otherwise the middle stage."""
    if 8 in strides[:-1]:
        return strides.index(8) + 1
    return max(1, len(strides) // 2)


def _cifar_stem(model: nn.Module, in_chans: int) -> int:
    """Make the stem stride 1 in place; return the factor by which every stage's stride shrinks."""
    conv1 = getattr(model, "conv1", None)
    if conv1 is None or not hasattr(model, "maxpool"):
        raise ValueError(
            f"stem='cifar' needs a ResNet-style model with conv1 and maxpool; {type(model).__name__} has neither"
        )
    first = conv1 if isinstance(conv1, nn.Conv2d) else next(m for m in conv1.modules() if isinstance(m, nn.Conv2d))
    replacement = nn.Conv2d(in_chans, first.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(replacement.weight, mode="fan_out", nonlinearity="relu")
    if first is conv1:
        model.conv1 = replacement
    else:  # deep stem (resnet*d, resnet10t, ...): its first conv carries the stride
        conv1[0] = replacement
    stem_pool_stride = 1 if isinstance(model.maxpool, nn.Identity) else 2
    model.maxpool = nn.Identity()
    return first.stride[0] * stem_pool_stride


class TimmCNNBackbone(Backbone):
    """A timm CNN split after stage ``split_layer``.

    Args:
        model_name: timm model name (``resnet18``, ``resnet50``, ``convnext_atto``, ...); never pretrained.
        split_layer: 1-based stage (default: the stride-8 stage, else the middle one).
        in_chans: input channels.
        img_size: recorded for callers; CNNs take any size.
        stem: ``"imagenet"`` (the model's own stem) or ``"cifar"`` (3x3 stride-1 conv, no max-pool; ResNets).
        drop_path_rate: stochastic depth where the model supports it.
        **timm_kwargs: passed to ``timm.create_model`` (``layers``, ``channels``, ``stem_type``, ...).
    """

    family = "cnn"

    def __init__(
        self,
        model_name: str = "resnet18",
        *,
        split_layer: int | None = None,
        in_chans: int = 3,
        img_size: int | tuple[int, int] | None = None,
        stem: Stem = "imagenet",
        drop_path_rate: float = 0.0,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        forced = sorted(k for k in timm_kwargs if k in _FORCED_KWARGS)
        if forced:
            raise ValueError(f"TimmCNNBackbone sets {', '.join(forced)} itself; do not pass them")
        create_kwargs: dict[str, Any] = dict(num_classes=0, in_chans=in_chans, **timm_kwargs)
        training_only = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        model = timm.create_model(model_name, pretrained=False, **create_kwargs, **training_only)
        if isinstance(model, VisionTransformer):
            raise ValueError(f"{model_name!r} is a VisionTransformer; use the ViT wrapper (ViTBackbone)")
        if not hasattr(model, "forward_intermediates") or not isinstance(getattr(model, "feature_info", None), list):
            raise ValueError(f"timm model {model_name!r} has no forward_intermediates/feature_info to split at")
        levels = [dict(level) for level in model.feature_info]
        first_stage = 1 if len(levels) > 1 and levels[0]["reduction"] <= 2 else 0  # skip the stem level
        shrink = _cifar_stem(model, in_chans) if stem == "cifar" else 1
        for level in levels:
            level["reduction"] = max(1, level["reduction"] // shrink)
        model.feature_info = levels

        self.model = model
        # how timm alone rebuilds ``self.model`` before the stem change (training-only options left out): export
        self.timm_name, self.timm_kwargs = model_name, create_kwargs
        self.stem = stem
        self.in_chans = in_chans
        self.img_size = img_size
        self.embed_dim = int(model.num_features)
        self._feature_indices = list(range(first_stage, len(levels)))
        self._infos = [
            LayerInfo(k, int(levels[i]["num_chs"]), int(levels[i]["reduction"]))
            for k, i in enumerate(self._feature_indices, start=1)
        ]
        self.num_layers = len(self._infos)
        strides = [info.stride for info in self._infos]
        self.split_layer = self.check_layer(default_cnn_split_layer(strides) if split_layer is None else split_layer)
        # The learned pooled-vector norm is sized for the construction-time split layer.
        self._pooled_norm_layer = self.split_layer
        self.norm_pooled = nn.LayerNorm(self._infos[self.split_layer - 1].channels, eps=1e-6)

    def layer_info(self) -> list[LayerInfo]:
        return list(self._infos)

    def _pool(self, feature_map: Tensor, layer: int) -> Tensor:
        mean = feature_map.mean(dim=(2, 3))
        return self.norm_pooled(mean) if layer == self._pooled_norm_layer else layer_norm_no_affine(mean)

    def _precision_for(self, x: Tensor, last_layer: int) -> contextlib.AbstractContextManager[Any]:
        """fp32 (autocast off) for a CPU training pass in which a downsampling stage up to ``last_layer`` would
        receive a one-pixel map; otherwise the caller's autocast.

        Why: on CPU, the bf16 weight gradient of a strided 3x3 convolution whose input is 1x1 (torch 2.13, oneDNN)
        comes back with uninitialised values, often inf/NaN, in the taps that see only padding; the forward pass
        and the input gradient are right. E-SSL's half-size crops (16 px at 32 px) hit this in stage 4 of the
        ImageNet-stem ResNet-18 whenever the loss reads the final embedding, and AdamW wrote the NaN into
        ``layer4.0.conv1.weight`` within a few steps. Such inputs are small, so fp32 costs little.
        """
        if x.device.type != "cpu" or not torch.is_grad_enabled() or not torch.is_autocast_enabled("cpu"):
            return contextlib.nullcontext()
        side = min(x.shape[-2:])
        stages = self._infos[:last_layer]
        if any(cur.stride > prev.stride and side <= prev.stride for prev, cur in zip(stages, stages[1:])):
            return torch.autocast("cpu", enabled=False)
        return contextlib.nullcontext()

    def forward(self, x: Tensor) -> Tensor:
        with self._precision_for(x, self.num_layers):
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward_split(
        self, x: Tensor, layer: int | None = None, *, with_map: bool = True, with_pooled: bool = True
    ) -> SplitOutput:
        layer = self._layer(layer)
        with self._precision_for(x, self.num_layers):
            final, (feature_map,) = self.model.forward_intermediates(x, indices=[self._feature_indices[layer - 1]])
        return SplitOutput(
            embedding=self.model.forward_head(final, pre_logits=True),
            feature_map=feature_map if with_map else None,
            pooled=self._pool(feature_map, layer) if with_pooled else None,
        )

    def forward_map(self, x: Tensor, layer: int | None = None) -> Tensor:
        layer = self._layer(layer)
        with self._precision_for(x, layer):
            (feature_map,) = self.model.forward_intermediates(
                x, indices=[self._feature_indices[layer - 1]], stop_early=True, intermediates_only=True
            )
        return feature_map

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stem={self.stem}"
