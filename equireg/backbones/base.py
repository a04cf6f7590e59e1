"""The backbone contract shared by the training engine, the equivariance losses and evaluation.

A backbone is split at one layer k (``--equiv-layer k``): f = f2 ∘ f1, where f1 ends at layer k. The invariance
objective sees only the final embedding f(x); the equivariance regulariser sees the spatial map f1(x) at layer k,
on which a group acts by moving cells. Every family (ViT, CNN) exposes that split through the same three calls,
so nothing downstream needs to know which family it trains.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LayerInfo:
    """Shape facts of the spatial map at one split layer.

    Attributes:
        index: 1-based layer index (ViT block k, CNN stage k).
        channels: channels of the spatial map at that layer.
        stride: input pixels per map cell (ViT: the patch size; ResNet with ImageNet stem: 4, 8, 16, 32).
    """

    index: int
    channels: int
    stride: int

    def map_size(self, height: int, width: int) -> tuple[int, int]:
        """Map grid for an input of ``height`` x ``width`` pixels (exact for ViTs, nominal for CNNs)."""
        return height // self.stride, width // self.stride


@dataclass
class SplitOutput:
    """Everything one forward pass yields for an invariance objective plus an equivariance add-on.

    Attributes:
        embedding: (B, D) final invariant embedding (ViT: final-LN [CLS]; CNN: pooled last stage).
        feature_map: (B, C, h, w) spatial map at the split layer, or None when not requested.
        pooled: (B, C) layer-k vector for decoupled comparison methods, or None when not requested.
    """

    embedding: Tensor
    feature_map: Tensor | None
    pooled: Tensor | None


class Backbone(nn.Module):
    """Base class: an image encoder that can be tapped at a 1-based split layer.

    Subclasses set the attributes below in ``__init__`` and implement ``layer_info``, ``forward``,
    ``forward_split`` and ``forward_map``.
    """

    family: str  # "vit" | "cnn"
    embed_dim: int  # size of `embedding`
    num_layers: int  # ViT depth / CNN number of stages; valid split layers are 1..num_layers
    split_layer: int  # layer whose map forward_split / forward_map return by default
    in_chans: int

    def layer_info(self) -> list[LayerInfo]:
        """One :class:`LayerInfo` per valid layer, in order."""
        raise NotImplementedError

    def info(self, layer: int | None = None) -> LayerInfo:
        """The :class:`LayerInfo` of ``layer`` (default: the split layer)."""
        return self.layer_info()[self._layer(layer) - 1]

    def valid_layers(self) -> list[int]:
        return list(range(1, self.num_layers + 1))

    def check_layer(self, layer: int) -> int:
        """Return ``layer`` as an int, or raise ValueError naming the valid values."""
        valid = self.valid_layers()
        try:
            if isinstance(layer, bool):
                raise TypeError
            index = operator.index(layer)
        except TypeError:
            raise ValueError(
                f"split layer must be an integer in {valid[0]}..{valid[-1]} for this {self.family} backbone, "
                f"got {layer!r}"
            ) from None
        if index not in valid:
            raise ValueError(
                f"split layer {index} is out of range for this {self.family} backbone with {self.num_layers} "
                f"layers; valid layers: {', '.join(map(str, valid))}"
            )
        return index

    def check_image_size(self, size: int, layer: int | None = None, smallest: int = 8) -> None:
        """Raise ValueError unless ``size`` is a multiple of the cell of ``layer``'s map (ViT: the patch size),
        naming the nearest sizes (at least ``smallest``) that are."""
        info = self.info(layer)
        if size % info.stride == 0:
            return
        below = size // info.stride * info.stride
        nearest = [s for s in (below, below + info.stride) if s >= smallest]
        cell = "the patch size" if self.family == "vit" else f"one cell of the layer-{info.index} map"
        raise ValueError(
            f"image size {size} is not a multiple of {info.stride} px, {cell} of this {self.family} backbone; "
            f"nearest sizes that work: {', '.join(map(str, nearest))} (data.image_size / --image-size)"
        )

    def _layer(self, layer: int | None) -> int:
        return self.check_layer(self.split_layer if layer is None else layer)

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) embedding only: the cheap path for linear probes and kNN."""
        raise NotImplementedError

    def forward_split(
        self, x: Tensor, layer: int | None = None, *, with_map: bool = True, with_pooled: bool = True
    ) -> SplitOutput:
        """Embedding plus the layer-``layer`` map and pooled vector, from a single pass.

        ``with_map`` / ``with_pooled`` = False skip those outputs (returned as None), so their LayerNorms
        stay out of the autograd graph when a method does not use them.
        """
        raise NotImplementedError

    def forward_map(self, x: Tensor, layer: int | None = None) -> Tensor:
        """(B, C, h, w) map at ``layer``, running only the layers up to it."""
        raise NotImplementedError

    def fixed_place(self, height: int, width: int) -> int:
        """The layer of :meth:`forward_final_map` at this input size: the deepest one whose map has at least 2x2
        cells (a 1x1 map has no spatial structure for a group to move)."""
        deep = [i.index for i in self.layer_info() if min(i.map_size(height, width)) >= 2]
        if not deep:
            raise ValueError(f"no layer of this {self.family} backbone has a map of at least 2x2 at {height}x{width}")
        return deep[-1]

    def forward_final_map(self, x: Tensor, reference: tuple[int, int] | None = None) -> Tensor:
        """The map scored at the fixed place, so equivariance scores compare across runs split at different
        layers: the deepest map of at least 2x2 cells for an input of size ``reference`` (default: ``x``'s own; a
        rescaled copy of an image must be read at its original's layer). ViTs override it: the final token map
        after the final norm."""
        height, width = reference or (int(x.shape[-2]), int(x.shape[-1]))
        return self.forward_map(x, self.fixed_place(height, width))

    def extra_repr(self) -> str:
        return f"family={self.family}, embed_dim={self.embed_dim}, num_layers={self.num_layers}, " \
            f"split_layer={self.split_layer}"


def tokens_to_map(tokens: Tensor, height: int, width: int) -> Tensor:
    """(B, h*w, C) row-major tokens -> (B, C, h, w)."""
    batch, count, channels = tokens.shape
    if count != height * width:
        raise ValueError(f"cannot reshape {count} tokens into a {height}x{width} grid")
    return tokens.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def layer_norm_no_affine(x: Tensor) -> Tensor:
    """LayerNorm over the last dim without learned scale/shift (used where no learned norm exists)."""
    return torch.nn.functional.layer_norm(x, x.shape[-1:], eps=1e-6)
