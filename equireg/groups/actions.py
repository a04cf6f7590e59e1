"""Spatial action kernels shared by the groups: exact index permutations and affine resampling.

Coordinates: x points right (width axis), y points down (height axis), origin at the grid centre, one unit per
cell. An element with linear part A acts on a map f by (rho_g f)(u) = f(A^-1 u). With these conventions a
quarter turn A = [[0, 1], [-1, 0]] is exactly ``torch.rot90(f, 1, dims=(-2, -1))`` and the mirror
A = diag(-1, 1) is ``torch.flip(f, dims=(-1,))``, which are escnn's p4m conventions as well.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


@lru_cache(maxsize=512)
def _d4_source_index(h: int, w: int, quarter_turns: int, flip: int) -> Tensor:
    """For output cell i (row-major), the input cell it reads, under flip-then-rotate."""
    idx = torch.arange(h * w).view(h, w)
    if flip:
        idx = torch.flip(idx, dims=(-1,))
    return torch.rot90(idx, quarter_turns % 4, dims=(-2, -1)).reshape(-1)


def d4_permute(x: Tensor, quarter_turns: Tensor, flips: Tensor) -> Tensor:
    """Exact per-sample D4 action (flip then rotate by quarter turns) as one gather; no interpolation.

    A batch may mix elements freely on square grids; on non-square grids all samples must agree on whether they
    turn by an odd number of quarter turns (the output grid is transposed then).
    """
    b, c, h, w = x.shape
    odd = (quarter_turns % 2).bool()  # on the codes' device: host codes need no wait for the map's device
    if h != w and bool(odd.any()):
        if not bool(odd.all()):
            raise ValueError(
                f"a 90-degree rotation needs a square grid when a batch mixes rotations; got {h}x{w}"
            )
    out_h, out_w = (w, h) if bool(odd.any()) else (h, w)
    codes = (quarter_turns % 4) + 4 * (flips % 2)
    table = torch.stack([_d4_source_index(h, w, k % 4, k // 4) for k in range(8)]).to(codes.device)
    src = table[codes].to(x.device, non_blocking=True)  # (B, H*W)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # rows of C contiguous channels: one index_select moves whole channel vectors
        rows = x.permute(0, 2, 3, 1).reshape(b * h * w, c)
        offsets = torch.arange(b, device=x.device).unsqueeze(1) * (h * w)
        out = rows.index_select(0, (src + offsets).reshape(-1))
        return out.view(b, out_h, out_w, c).permute(0, 3, 1, 2)
    flat = x.reshape(b, c, h * w)
    return flat.gather(2, src.unsqueeze(1).expand(b, c, h * w)).view(b, c, out_h, out_w)


def rotation_matrix(angle: Tensor) -> Tensor:
    """Linear part of a counter-clockwise (on screen) rotation, shape (..., 2, 2); angle in radians."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)


MIRROR = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])


def affine_resample(
    x: Tensor, linear: Tensor, out_size: tuple[int, int] | None = None, mode: str = "bicubic"
) -> Tensor:
    """(rho f)(u) = f(A^-1 u) by bicubic resampling; per-sample A of shape (B, 2, 2); zeros outside the grid.

    Sampling is in cell units around the grid centre, so non-square grids and changes of grid size keep the
    geometry (a grid of size out = s * in with A = s I is a plain resize).
    """
    b, _, h, w = x.shape
    oh, ow = out_size if out_size is not None else (h, w)
    host = linear.device  # theta is built where the elements live (the host for built-in groups): no device wait
    a_inv = torch.linalg.inv(linear.to(torch.float64))
    d_in_inv = torch.diag(torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64, device=host))
    d_out = torch.diag(torch.tensor([ow / 2.0, oh / 2.0], dtype=torch.float64, device=host))
    theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=host)
    theta[:, :, :2] = d_in_inv @ a_inv @ d_out
    # float32 scale factors such as 13/11 carry ~1e-7 relative error: a window that differs from the whole grid by
    # less than 1e-6 cells per cell is the plain resize SER's feature action performs
    if bool(torch.allclose(theta[:, :, :2], torch.eye(2, dtype=torch.float64, device=host), atol=1e-6)):
        if (oh, ow) == (h, w):
            return x.clone()
        # a pure change of grid (e.g. a token-aligned scale view): an ordinary resize, edges clamped
        return F.interpolate(x, size=(oh, ow), mode=mode, align_corners=False)
    compute_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    grid = F.affine_grid(theta.to(device=x.device, dtype=compute_dtype), [b, 1, oh, ow], align_corners=False)
    y = F.grid_sample(x.to(compute_dtype), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return y.to(x.dtype)

