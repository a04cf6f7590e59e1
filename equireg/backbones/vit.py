"""ViT backbone on timm's ``VisionTransformer``, with SER's late [CLS] insertion.

With ``cls_position="after_equiv"`` (the SER architecture) blocks 1..k see only patch tokens and the
positional embedding has no slot for the [CLS]; the [CLS] is concatenated at position 0 after block k and
blocks k+1..depth run on 1+N tokens. The layer-k map is then a pure patch-token grid on which rotations,
flips and rescaling act by moving tokens, and no global token can carry image-level information through it.
With ``cls_position="input"`` (the default, the baselines' architecture) the model is an ordinary timm ViT and the
split only taps block k.

Paper-mode details (methods.md §7.2), each an argument so the objective's official settings can be applied:
positional embeddings on a non-native grid are resampled as the official code does (bicubic with
``scale_factor = (n + 0.1) / N`` per axis, no antialias; ``pos_resample="timm"`` selects timm's size-based
resampling instead); ``init="moco"`` is MoCo-v3's initialisation and ``init="ser"`` the DINO-style one of SER's
DINO and Barlow Twins runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

import equireg  # noqa: F401  (installs the torchvision shim before timm is imported)
import timm
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from equireg.backbones.base import Backbone, LayerInfo, SplitOutput, tokens_to_map

CLS_POSITIONS = ("input", "after_equiv")
ClsPosition = Literal["input", "after_equiv"]
POS_RESAMPLES = ("official", "timm")
INITS = ("timm", "moco", "ser")

# Keys the wrapper sets itself; overriding them would break the contract.
_FORCED_KWARGS = ("num_classes", "global_pool", "class_token", "no_embed_class", "dynamic_img_size",
                  "reg_tokens", "pretrained")


def default_vit_split_layer(depth: int) -> int:
    """SER's "layer 3", or the last block of a shallower model."""
    return 3 if depth >= 3 else depth


class ViTBackbone(Backbone):
    """A timm ViT split at block ``split_layer``.

    Args:
        model_name: any timm model built by ``VisionTransformer`` (e.g. ``vit_small_patch16_224``); weights
            are never downloaded.
        split_layer: 1-based block whose patch tokens form the equivariant map (default 3, or depth if
            shallower). With ``after_equiv`` it also fixes where the [CLS] joins, at construction time.
        cls_position: ``"input"`` (standard ViT with a [CLS] position slot; the baselines) or ``"after_equiv"``
            (SER). When ``split_layer == depth`` under ``after_equiv`` the [CLS] would join after the last block
            and the embedding would be the same constant vector for every image; it therefore enters at the input
            instead, still without a positional slot (the intent of the official code's layer-12 branch).
        in_chans: input channels.
        img_size: image size the positional embedding is laid out for; other multiples of the patch size,
            including non-square ones, are handled by resampling it (see ``pos_resample``).
        freeze_patch_embed: MoCo-v3's stop-gradient on the patch projection (random fixed patch embedding).
        drop_path_rate: stochastic depth, linearly increasing over blocks (timm rule).
        init: ``"timm"``, ``"moco"`` (xavier-uniform linears with qkv split in three for the bound, zero biases,
            [CLS] std 1e-6) or ``"ser"`` (trunc-normal 0.02 linears and [CLS]).
        pos_resample: ``"official"`` (DINO/SER: bicubic, scale factor (n + 0.1)/N, no antialias) or ``"timm"``.
        vit_settings: the objective's official ViT settings (keys ``freeze_patch_embed``, ``drop_path_rate``,
            ``init``); arguments given explicitly win over them.
        **timm_kwargs: passed to ``timm.create_model`` (``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ...).
    """

    family = "vit"

    def __init__(
        self,
        model_name: str = "vit_tiny_patch16_224",
        *,
        split_layer: int | None = None,
        cls_position: ClsPosition = "input",
        in_chans: int = 3,
        img_size: int | tuple[int, int] | None = None,
        freeze_patch_embed: bool | None = None,
        drop_path_rate: float | None = None,
        init: str | None = None,
        pos_resample: str = "official",
        vit_settings: Mapping[str, Any] | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        settings = _settings(vit_settings, freeze_patch_embed=freeze_patch_embed, drop_path_rate=drop_path_rate,
                             init=init)
        _check_choice("cls_position", cls_position, CLS_POSITIONS)
        _check_choice("pos_resample", pos_resample, POS_RESAMPLES)
        _check_choice("init", settings["init"], INITS)
        forced = sorted(k for k in timm_kwargs if k in _FORCED_KWARGS)
        if forced:
            raise ValueError(f"ViTBackbone sets {', '.join(forced)} itself; do not pass them")
        if timm_kwargs.get("patch_drop_rate"):
            raise ValueError("patch_drop_rate > 0 is not supported: dropped tokens break the spatial map")
        if img_size is not None:
            timm_kwargs["img_size"] = img_size
        create_kwargs: dict[str, Any] = dict(
            in_chans=in_chans, num_classes=0, global_pool="token", class_token=True,
            no_embed_class=cls_position == "after_equiv", dynamic_img_size=True, **timm_kwargs,
        )
        vit = timm.create_model(model_name, pretrained=False, drop_path_rate=settings["drop_path_rate"],
                                **create_kwargs)
        if type(vit) is not VisionTransformer:
            raise ValueError(
                f"timm model {model_name!r} builds {type(vit).__name__}, not a plain VisionTransformer; "
                "use a vit_* model or the CNN wrapper"
            )
        patch_h, patch_w = vit.patch_embed.patch_size
        if patch_h != patch_w:
            raise ValueError(f"only square patches are supported, got {patch_h}x{patch_w}")
        self.vit = vit
        # how timm alone rebuilds ``self.vit`` (training-only options left out): used by `equireg export`
        self.timm_name, self.timm_kwargs = model_name, create_kwargs
        self.cls_position = cls_position
        self.pos_resample = pos_resample
        self.init = settings["init"]
        self.drop_path_rate = float(settings["drop_path_rate"])
        self.in_chans = in_chans
        self.embed_dim = vit.embed_dim
        self.num_layers = len(vit.blocks)
        self.patch_size = patch_h
        self.img_size: tuple[int, int] = tuple(vit.patch_embed.img_size)  # type: ignore[assignment]
        self.split_layer = default_vit_split_layer(self.num_layers) if split_layer is None else split_layer
        self.split_layer = self.check_layer(self.split_layer)
        # Number of blocks run before the [CLS] joins the sequence (0 = at the input).
        late = cls_position == "after_equiv" and self.split_layer < self.num_layers
        self.cls_insert_after = self.split_layer if late else 0
        self.norm_equiv = nn.LayerNorm(self.embed_dim, eps=1e-6)
        self.norm_pooled = nn.LayerNorm(self.embed_dim, eps=1e-6)
        _initialise(self.vit, self.init)
        self.freeze_patch_embed = bool(settings["freeze_patch_embed"])
        if self.freeze_patch_embed:
            self.vit.patch_embed.requires_grad_(False)

    def layer_info(self) -> list[LayerInfo]:
        return [LayerInfo(k, self.embed_dim, self.patch_size) for k in self.valid_layers()]

    def no_weight_decay(self) -> set[str]:
        """Parameter names conventionally excluded from weight decay (timm optimiser factory protocol)."""
        return {f"vit.{name}" for name in self.vit.no_weight_decay()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward to save memory (large ViTs on the device machine)."""
        self.vit.set_grad_checkpointing(enable)

    # -- internals -------------------------------------------------------------------------------------------

    def _grid(self, x: Tensor) -> tuple[int, int]:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}; "
                f"use sizes n*{self.patch_size}"
            )
        return height // self.patch_size, width // self.patch_size

    def _cls(self, batch: int) -> Tensor:
        return self.vit.cls_token.expand(batch, -1, -1)

    def _embed(self, x: Tensor) -> Tensor:
        """Patch tokens plus positional embedding (and the [CLS] when it enters at the input)."""
        tokens = self.vit.patch_embed(x)  # (B, h, w, C): dynamic_img_size keeps the grid
        batch, grid_h, grid_w, channels = tokens.shape
        tokens = tokens.reshape(batch, grid_h * grid_w, channels)
        cls_at_input = self.cls_insert_after == 0
        pos = self.vit.pos_embed
        if pos is None:
            if cls_at_input:
                tokens = torch.cat([self._cls(batch), tokens], dim=1)
        elif self.vit.no_embed_class:
            tokens = tokens + self._positions(pos, (grid_h, grid_w), prefix=0)
            if cls_at_input:
                tokens = torch.cat([self._cls(batch), tokens], dim=1)
        else:  # standard ViT: the [CLS] owns position slot 0
            tokens = torch.cat([self._cls(batch), tokens], dim=1) + self._positions(pos, (grid_h, grid_w), prefix=1)
        return self.vit.norm_pre(self.vit.pos_drop(tokens))

    def _positions(self, pos: Tensor, grid: tuple[int, int], prefix: int) -> Tensor:
        """The positional table for a ``grid`` of patch tokens (plus ``prefix`` leading [CLS] slots)."""
        native = tuple(self.vit.patch_embed.grid_size)
        if self.pos_resample == "timm":
            return resample_abs_pos_embed(pos, new_size=grid, old_size=native, num_prefix_tokens=prefix)
        return torch.cat([pos[:, :prefix], resample_pos_official(pos[:, prefix:], native, grid)], dim=1)

    def _run(self, x: Tensor, tap: int | None, stop_at_tap: bool) -> tuple[Tensor | None, Tensor | None]:
        """Run the blocks; return (tokens after block ``tap``, tokens after the last block or None)."""
        tokens = self._embed(x)
        tapped = None
        for index, block in enumerate(self.vit.blocks, start=1):
            if index - 1 == self.cls_insert_after and self.cls_insert_after > 0:
                tokens = torch.cat([self._cls(tokens.shape[0]), tokens], dim=1)
            if self.vit.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
            if index == tap:
                tapped = tokens
                if stop_at_tap:
                    return tapped, None
        return tapped, tokens

    def _has_cls(self, layer: int) -> bool:
        return layer > self.cls_insert_after

    def _embedding(self, final_tokens: Tensor) -> Tensor:
        return self.vit.fc_norm(self.vit.norm(final_tokens[:, 0]))

    def _map(self, tapped: Tensor, layer: int, grid: tuple[int, int]) -> Tensor:
        patches = tapped[:, 1:] if self._has_cls(layer) else tapped
        return tokens_to_map(self.norm_equiv(patches), *grid).contiguous()

    # -- contract ---------------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        self._grid(x)
        _, final = self._run(x, tap=None, stop_at_tap=False)
        assert final is not None
        return self._embedding(final)

    def forward_split(
        self, x: Tensor, layer: int | None = None, *, with_map: bool = True, with_pooled: bool = True
    ) -> SplitOutput:
        layer = self._layer(layer)
        grid = self._grid(x)
        tapped, final = self._run(x, tap=layer, stop_at_tap=False)
        assert tapped is not None and final is not None
        feature_map = self._map(tapped, layer, grid) if with_map else None
        pooled = None
        if with_pooled:
            pooled = self.norm_pooled(tapped[:, 0] if self._has_cls(layer) else tapped.mean(dim=1))
        return SplitOutput(embedding=self._embedding(final), feature_map=feature_map, pooled=pooled)

    def forward_map(self, x: Tensor, layer: int | None = None) -> Tensor:
        layer = self._layer(layer)
        grid = self._grid(x)
        tapped, _ = self._run(x, tap=layer, stop_at_tap=True)
        assert tapped is not None
        return self._map(tapped, layer, grid)

    def forward_final_map(self, x: Tensor, reference: tuple[int, int] | None = None) -> Tensor:
        """The final token map: all blocks, the final norm, patch tokens only, (B, C, h, w) (any input size)."""
        grid = self._grid(x)
        _, final = self._run(x, tap=None, stop_at_tap=False)
        assert final is not None
        return tokens_to_map(self.vit.norm(final[:, 1:]), *grid).contiguous()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, cls_position={self.cls_position}, cls_insert_after={self.cls_insert_after}"


def resample_pos_official(pos: Tensor, native: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """(1, N, C) patch positional table on the ``native`` grid -> the ``grid`` of rows x cols tokens, as DINO and
    SER's ``interpolate_pos_encoding`` do: bicubic with ``scale_factor = (n + 0.1) / N`` per axis (the +0.1 avoids
    a floating-point off-by-one in the output size), ``align_corners=False``, no antialias. Identity on the native
    grid. timm's size-based resampling (antialiased on downscale) gives different values."""
    if tuple(grid) == tuple(native):
        return pos
    (n_rows, n_cols), (rows, cols) = native, grid
    table = pos.reshape(1, n_rows, n_cols, -1).permute(0, 3, 1, 2)
    out = F.interpolate(table.float(), scale_factor=((rows + 0.1) / n_rows, (cols + 0.1) / n_cols), mode="bicubic")
    if tuple(out.shape[-2:]) != (rows, cols):  # pragma: no cover - the +0.1 rule guarantees it
        raise RuntimeError(f"positional resampling gave {tuple(out.shape[-2:])}, expected {(rows, cols)}")
    return out.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, rows * cols, -1)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _settings(vit_settings: Mapping[str, Any] | None, **explicit: Any) -> dict[str, Any]:
    """Explicit arguments, else the objective's official ``vit_settings``, else timm's defaults."""
    base: dict[str, Any] = {"freeze_patch_embed": False, "drop_path_rate": 0.0, "init": "timm"}
    unknown = sorted(set(vit_settings or {}) - set(base))
    if unknown:
        raise ValueError(f"vit_settings keys must be among {sorted(base)}, got {unknown}")
    base.update(vit_settings or {})
    base.update({k: v for k, v in explicit.items() if v is not None})
    return base


def _initialise(vit: VisionTransformer, scheme: str) -> None:
    """Re-initialise after timm's default ("timm") as the official codebases do (methods.md §1.3, §7.2)."""
    if scheme == "timm":
        return
    if scheme == "ser":  # DINO-style: timm's linears already are trunc-normal 0.02; the [CLS] is too there
        nn.init.trunc_normal_(vit.cls_token, std=0.02)
        return
    for name, module in vit.named_modules():  # MoCo-v3
        if isinstance(module, nn.Linear):
            if "qkv" in name:  # Q, K and V as three separate matrices for the uniform bound
                bound = math.sqrt(6.0 / float(module.weight.shape[0] // 3 + module.weight.shape[1]))
                nn.init.uniform_(module.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.normal_(vit.cls_token, std=1e-6)
