"""Equivariance score: how well a backbone's layer-k map follows the group action on its input.

Definition (ours; the SER paper's exact formula is unconfirmed, see methods.md 1.10). For an element g, images
x_1..x_N, and f1 = the backbone up to layer k (``forward_map``):

    score(g) = (1/N) sum_i  (1/|V_i|) sum_{u in V_i}  cos( [rho_g f1(x_i)](u), [f1(g . x_i)](u) )

- ``cos`` is the cosine over channels at one map position u; two (numerically) zero vectors count as 1.
- rho_g moves map positions only (trivial fibre, as in SER): ``G.act(map, g, out_size=...)``.
- g . x is ``G.act(x, g, out_size=S')``. For grid-preserving elements (D4) S' is the input size. For an element
  that changes area by s^2 (scale), S' is chosen so that the map of g . x has round(s * h) cells per side
  (S' = that many cells times the input pixels per cell), i.e. the token-aligned rescaled view SER uses; rho_g
  f1(x) is then sampled on that map's grid ("compare on the common grid").
- V_i is the set of positions at least half covered by the moved grid (the interpolation weight from inside
  the original map is >= 0.5), which drops the padded corners of non-quarter-turn rotations and zoom-out margins.
  For exact (D4) actions every position is kept.

The invariant side is the same cosine at the final embedding: (1/N) sum_i cos(f(x_i), f(g . x_i)).
Both lie in [-1, 1]; an exactly equivariant layer scores 1.

Two places (``layer``): the run's split layer k (how equivariant the map the loss acted on became), or ``"fixed"``:
one place for every run, so runs split at different layers and the baseline are on one scale (the slides' layer
table, methods.md §7.4): the backbone's ``forward_final_map`` (ViT: the final token map after the final norm; CNN:
the deepest map of at least 2x2 cells). :func:`comparable_elements` gives that mode's elements: rotations averaged
over 90/180/270 degrees, the flip, and scale averaged over 0.7..1.3.

A cosine of raw features is high whenever all positions share a large common component (a conv bias, the
positive mean of ReLU maps, LayerNorm offsets): a random CNN with biases scored 0.95 on p4m, the same CNN without
biases 0.62. ``center=True`` subtracts the per-channel mean of f1(x) over the batch's images and positions (and
the batch mean of f(x) for the embedding) from both sides before the cosine, which removes that offset; an
equivariant network still scores 1. The raw form is the default since it is the likelier reading of the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from equireg.backbones.base import Backbone
from equireg.evaluation._common import Batches, JsonResult, autocast, eval_mode, iterate_batches, resolve_device

if TYPE_CHECKING:
    from equireg.groups import Elements, Group

#: interpolation weight from inside the original grid needed for a position to count
MIN_COVERAGE = 0.5


FIXED = "fixed"
SCALES = (0.7, 0.85, 1.15, 1.3)


def comparable_elements(group: Group) -> dict[str, Elements]:
    """The fixed-place score's elements: ``rotation`` (90, 180 and 270 degrees, averaged), ``flip`` and ``scale``
    (0.7, 0.85, 1.15, 1.3, averaged), whichever the group has."""
    generators = group.generators()
    out: dict[str, Elements] = {}
    if "rot90" in generators:
        out["rotation"] = group.make(rot=torch.tensor([1, 2, 3]))
    if "flip" in generators:
        out["flip"] = group.make(flip=1)
    if "scale" in group.param_names:
        out["scale"] = group.make(scale=torch.tensor(SCALES))
    if not out:
        raise ValueError(f"group {group.name!r} has no rotations, flip or scale to score at the fixed place")
    return out


@dataclass
class EquivarianceResult(JsonResult):
    """Scores per element kind (mean cosine, 1 = exactly equivariant / invariant).

    Attributes:
        layer: the split layer scored, or ``"fixed"`` (see the module docstring; ``fixed_layer`` says which).
        map_scores: kind -> score of rho_g f1(x) against f1(g . x) at ``layer``.
        embedding_scores: kind -> cosine of f(x) and f(g . x) (empty when not computed).
        elements: kind -> the elements that were averaged, as text.
        transformed_sizes: kind -> [[H', W'], ...] input size used for g . x, per element.
        centered: whether the batch-mean offset was removed before the cosine.
    """

    layer: int | str | None
    map_scores: dict[str, float]
    embedding_scores: dict[str, float]
    elements: dict[str, list[str]]
    transformed_sizes: dict[str, list[list[int]]]
    num_images: int
    centered: bool = False
    fixed_layer: int | None = None


def zero_safe_cosine(a: Tensor, b: Tensor, dim: int = 1, rel_eps: float = 1e-6) -> Tensor:
    """Cosine along ``dim``; where both vectors are zero (relative to the typical norm) the result is 1, where
    only one is, 0. Plain cosine with an epsilon would score two identical zero vectors as 0."""
    na, nb = a.norm(dim=dim), b.norm(dim=dim)
    scale = torch.cat([na.flatten(), nb.flatten()]).mean().clamp_min(1e-30)
    tiny = rel_eps * scale
    cos = (a * b).sum(dim=dim) / (na * nb).clamp_min(tiny * tiny)
    both_zero = (na <= tiny) & (nb <= tiny)
    return torch.where(both_zero, torch.ones_like(cos), cos.clamp(-1.0, 1.0))


def element_linear_scale(group: Group, g: Elements, probe: int = 16) -> float:
    """Linear scale factor s = sqrt|det A| of g's action, where rho_g f(u) = f(A^-1 u).

    Needs nothing from the group beyond ``act``: the coordinate field f(u) = u is moved on a ``probe``-sized
    grid, and A^-1 is the least-squares fit of the moved field against the positions that are fully covered
    (there every interpolation weight falls inside the grid, and bicubic resampling reproduces linear fields to
    about 0.1%, far below the one-cell rounding the result feeds).
    Grid-preserving exact actions (the D4 family) have s = 1 without a probe.
    """
    if getattr(group, "is_exact", False):
        return 1.0
    axis = torch.arange(probe, dtype=torch.float64) - (probe - 1) / 2
    uy, ux = torch.meshgrid(axis, axis, indexing="ij")
    field = torch.stack([ux, uy]).unsqueeze(0)  # (1, 2, probe, probe): the position of each cell
    moved = group.act(field, g)[0].reshape(2, -1).T  # value at v is A^-1 v where covered
    coverage = group.act(torch.ones(1, 1, probe, probe, dtype=torch.float64), g)[0, 0].reshape(-1)
    covered = (coverage - 1).abs() < 1e-6
    if int(covered.sum()) < 3:
        raise ValueError(f"cannot measure the scale of {g!r}: it moves the whole {probe}x{probe} probe off the grid")
    positions = field[0].reshape(2, -1).T[covered]
    a_inv_t = torch.linalg.lstsq(positions, moved[covered]).solution  # positions @ A^-T = moved
    return float(abs(torch.linalg.det(a_inv_t))) ** -0.5


def _transformed_size(scale: float, in_size: tuple[int, int], map_size: tuple[int, int]) -> tuple[int, int]:
    """Input size S' whose map has round(scale * h) cells, keeping the pixels-per-cell of the original."""
    out = []
    for size, cells in zip(in_size, map_size):
        target_cells = max(1, round(scale * cells))
        out.append(max(1, round(target_cells * size / cells)))
    return out[0], out[1]


def _split_elements(elements: Elements) -> list[Elements]:
    """A single element, or each element of a 1-D batch."""
    batch_shape = tuple(getattr(elements, "batch_shape", ()))
    if len(batch_shape) == 0:
        return [elements]
    if len(batch_shape) != 1:
        raise ValueError(f"elements per kind must be one element or a 1-D batch, got batch shape {batch_shape}")
    return [elements[i] for i in range(batch_shape[0])]


@torch.no_grad()
def equivariance_score(
    backbone: nn.Module,
    images: Batches,
    group: Group,
    layer: int | str | None = None,
    elements: Mapping[str, Elements] | None = None,
    with_embedding: bool = True,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 64,
    max_images: int | None = None,
    center: bool = False,
) -> EquivarianceResult:
    """Mean cosine between rho_g f1(x) and f1(g . x) per kind of element (see the module docstring).

    Args:
        backbone: has ``forward_map(x, layer=k) -> (B, C, h, w)`` and, for the embedding side,
            ``forward_split(x, layer=k)`` returning an object with ``.embedding`` and ``.feature_map``.
        images: (N, C, H, W) images, or batches of images / (images, labels) (labels are ignored).
        group: an ``equireg.groups`` group (uses ``act``, ``generators`` and ``is_exact``).
        layer: the split layer k (default: the backbone's own split layer, recorded in the result), or ``"fixed"``
            (the backbone's ``forward_final_map``, the same place for every run).
        elements: kind -> one element or a 1-D batch of elements whose scores are averaged; default
            ``group.generators()`` (e.g. ``{"rot90": ..., "flip": ...}`` for p4m, ``{"scale": ...}``).
        with_embedding: also report the invariant side at the final embedding.
        max_images: stop after this many images.
        center: subtract the batch mean of the untransformed features from both sides (see module docstring);
            the result then depends a little on ``batch_size``.
    """
    chosen = dict(group.generators() if elements is None else elements)
    if not chosen:
        raise ValueError(f"no elements to score: group {getattr(group, 'name', group)!r} has no generators")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    per_kind = {kind: _split_elements(els) for kind, els in chosen.items()}
    scales = {kind: [element_linear_scale(group, g) for g in els] for kind, els in per_kind.items()}
    dev = resolve_device(backbone, device)

    reference: list[tuple[int, int]] = []  # the first batch's size fixes a CNN's place for its transformed copies

    def run(x: Tensor) -> tuple[Tensor, Tensor | None]:
        with autocast(dev, amp_dtype):
            if layer == FIXED:
                fmap = backbone.forward_final_map(x, reference[0] if reference else None)
                return fmap.float(), backbone(x).float() if with_embedding else None
            if with_embedding:
                out = backbone.forward_split(x, layer=layer)
                return out.feature_map.float(), out.embedding.float()
            return backbone.forward_map(x, layer=layer).float(), None

    map_sums = {kind: 0.0 for kind in per_kind}
    emb_sums = {kind: 0.0 for kind in per_kind}
    sizes: dict[str, list[list[int]]] = {kind: [] for kind in per_kind}
    seen = 0
    with eval_mode(backbone):
        for x, _ in iterate_batches(images, batch_size):
            if max_images is not None:
                x = x[: max_images - seen]
            if x.shape[0] == 0:
                break
            x = x.to(dev).float()
            if not reference:
                reference.append((int(x.shape[-2]), int(x.shape[-1])))
            m_x, e_x = run(x)
            m_mean = m_x.mean(dim=(0, 2, 3), keepdim=True) if center else None
            e_mean = e_x.mean(dim=0, keepdim=True) if center and e_x is not None else None
            in_size = (x.shape[-2], x.shape[-1])
            map_size = (m_x.shape[-2], m_x.shape[-1])
            for kind, els in per_kind.items():
                for g, s in zip(els, scales[kind]):
                    out_img = _transformed_size(s, in_size, map_size)
                    gx = group.act(x, g, out_size=None if out_img == in_size else out_img)
                    m_gx, e_gx = run(gx)
                    if seen == 0:
                        sizes[kind].append(list(gx.shape[-2:]))
                    map_sums[kind] += float(_map_cosines(group, g, m_x, m_gx, m_mean).sum()) / len(els)
                    if e_x is not None and e_gx is not None:
                        if e_mean is not None:
                            e_x_c, e_gx_c = e_x - e_mean, e_gx - e_mean
                        else:
                            e_x_c, e_gx_c = e_x, e_gx
                        emb_sums[kind] += float(zero_safe_cosine(e_x_c, e_gx_c, dim=1).sum()) / len(els)
            seen += x.shape[0]
            if max_images is not None and seen >= max_images:
                break
    if seen == 0:
        raise ValueError("no images to score")
    fixed_layer = None
    if layer == FIXED and isinstance(backbone, Backbone) and backbone.family != "vit":
        fixed_layer = backbone.fixed_place(*reference[0])
    return EquivarianceResult(
        fixed_layer=fixed_layer,
        layer=layer if layer is not None else getattr(backbone, "split_layer", None),
        map_scores={k: v / seen for k, v in map_sums.items()},
        embedding_scores={k: v / seen for k, v in emb_sums.items()} if with_embedding else {},
        elements={k: [repr(g) for g in els] for k, els in per_kind.items()},
        transformed_sizes=sizes,
        num_images=seen,
        centered=center,
    )


def _map_cosines(group: Group, g: Elements, m_x: Tensor, m_gx: Tensor, offset: Tensor | None = None) -> Tensor:
    """Per-image mean cosine over the covered positions of rho_g m_x against m_gx, after subtracting
    ``offset`` (a per-channel vector) from both; shape (B,)."""
    target = (m_gx.shape[-2], m_gx.shape[-1])
    same_grid = target == (m_x.shape[-2], m_x.shape[-1])
    moved = group.act(m_x, g, out_size=None if same_grid else target)
    if moved.shape != m_gx.shape:
        raise ValueError(
            f"rho_g of the layer map has shape {tuple(moved.shape)} but the map of the transformed input has "
            f"{tuple(m_gx.shape)}; the backbone's map grid does not follow the input size"
        )
    if getattr(group, "is_exact", False):
        valid = torch.ones(target, dtype=torch.bool, device=m_x.device)
    else:
        ones = torch.ones(1, 1, m_x.shape[-2], m_x.shape[-1], device=m_x.device)
        coverage = group.act(ones, g, out_size=None if same_grid else target)[0, 0]
        valid = coverage >= MIN_COVERAGE
    if not bool(valid.any()):
        raise ValueError("no map position is covered by the moved grid; use a larger map or a milder element")
    if offset is not None:
        moved, m_gx = moved - offset, m_gx - offset
    cos = zero_safe_cosine(moved, m_gx, dim=1)  # (B, h, w)
    return cos[:, valid].mean(dim=1)
