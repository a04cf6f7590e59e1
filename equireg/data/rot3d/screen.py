"""The clean-label screen: which meshes rot3d may use, and why the others are skipped.

Three reasons to skip a mesh, checked in this order:

* ``broken``: the OBJ does not parse, has non-finite (NaN/inf) vertices, no faces or zero area, or pybullet
  cannot load it;
* ``thin``: in its unit-sphere frame the object covers less than ``min_coverage`` of the image (median over
  a few poses), so most views would be nearly empty;
* ``symmetric``: a turn S of the object changes its image so little that R and R·S are confused, so the
  rotation label is ambiguous. A turn that maps a surface onto itself fixes the surface centroid (the
  rendering origin) and has an eigenvector of the surface's second moment as its axis, so the candidates are
  turns by 180, 120 and 90 degrees about the three principal axes (2-, 3- and 4-fold symmetry; a continuous
  symmetry such as a cylinder's contains them). Each candidate is scored by the mean absolute colour
  difference between renders at a few random poses R and at R·S, over the pixels either render covers (the
  *gap*; exactly 0 for a symmetric box). Whether a gap is small is judged against the same object's gap
  for a small turn: the mean gap between R and R turned by ``reference_turn_deg`` about random axes. An
  object is skipped when its best candidate's gap is below ``symmetry_ratio`` times that reference, i.e.
  when some symmetry candidate looks more like R than a 10-degree error does. (Most ``random_urdfs`` objects
  are rods and slabs whose half-turn about the long axis changes only small details; about half are
  skipped, see docs/rot3d.md.)

Renders are at ``size`` pixels (32 by default): about 50 small renders per mesh (about 30 ms on one core).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from equireg.data.rot3d.mesh import BrokenMeshError, MeshFrame, mesh_frame, read_obj
from equireg.data.rot3d.render import Renderer
from equireg.data.rot3d.rotations import axis_angle_quaternion, multiply_quaternions, random_quaternions

SKIP_REASONS = ("broken", "thin", "symmetric")
SCREEN_COLOR = (0.85, 0.45, 0.2)
TURNS_DEG = (180.0, 120.0, 90.0)


@dataclass(frozen=True)
class ScreenConfig:
    """Thresholds of the screen (see the module docstring)."""

    size: int = 32
    poses: int = 4
    min_coverage: float = 0.03
    reference_turn_deg: float = 10.0
    reference_axes: int = 2
    symmetry_ratio: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "candidate_turns_deg": list(TURNS_DEG)}


@dataclass(frozen=True)
class ScreenResult:
    """The verdict on one mesh: ``reason`` is None when it is kept, else one of :data:`SKIP_REASONS`."""

    name: str
    path: str
    reason: str | None
    detail: str = ""
    coverage: float | None = None
    symmetry_gap: float | None = None
    reference_gap: float | None = None
    frame: MeshFrame | None = field(default=None, repr=False, compare=False)

    @property
    def kept(self) -> bool:
        return self.reason is None


def candidate_turns(frame: MeshFrame) -> list[tuple[str, np.ndarray]]:
    """(label, quaternion) of every candidate symmetry: each turn of :data:`TURNS_DEG` about each principal axis."""
    return [
        (f"{turn:g} deg about principal axis {k}", axis_angle_quaternion(frame.axes[:, k], math.radians(turn)))
        for k in range(3)
        for turn in TURNS_DEG
    ]


def image_gap(a: np.ndarray, b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Mean absolute colour difference (0-1) over the pixels either image's object covers."""
    union = mask_a | mask_b
    if not union.any():
        return 0.0
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1) / 255.0
    return float(diff[union].mean())


def screen_mesh(renderer: Renderer, name: str, obj_path: str | Path, config: ScreenConfig) -> ScreenResult:
    """Screen one mesh with an open renderer (see the module docstring); leaves the renderer empty."""
    try:
        frame = mesh_frame(read_obj(obj_path))
        renderer.load(obj_path, frame, SCREEN_COLOR)
    except (BrokenMeshError, ValueError) as exc:
        return ScreenResult(name, str(obj_path), "broken", str(exc))
    try:
        rng = np.random.default_rng([config.seed, _name_key(name)])
        poses = random_quaternions(config.poses, rng)
        renders = [renderer.render(q, config.size) for q in poses]
        coverage = float(np.median([mask.mean() for _, mask in renders]))
        if coverage < config.min_coverage:
            return ScreenResult(name, str(obj_path), "thin", f"covers {coverage:.1%} of the image", coverage, frame=frame)
        small_turns = [
            axis_angle_quaternion(rng.standard_normal(3), math.radians(config.reference_turn_deg))
            for _ in range(config.poses * config.reference_axes)
        ]
        reference = np.mean([  # turned in camera coordinates: small_turn * q
            _gap_after(renderer, config.size, multiply_quaternions(turn, q), *renders[i // config.reference_axes])
            for i, (turn, q) in enumerate(zip(small_turns, np.repeat(poses, config.reference_axes, axis=0)))
        ])
        gaps = {
            label: float(np.mean([
                _gap_after(renderer, config.size, multiply_quaternions(q, turn), *render)  # R·S: S in object frame
                for q, render in zip(poses, renders)
            ]))
            for label, turn in candidate_turns(frame)
        }  # fmt: skip
        label, gap = min(gaps.items(), key=lambda item: item[1])
        if gap < config.symmetry_ratio * reference:
            detail = f"a {label} changes the image less than a {config.reference_turn_deg:g} deg turn " \
                     f"(gap {gap:.3f} < {config.symmetry_ratio * reference:.3f})"
            return ScreenResult(name, str(obj_path), "symmetric", detail, coverage, gap, float(reference), frame)
        return ScreenResult(name, str(obj_path), None, "", coverage, gap, float(reference), frame)
    finally:
        renderer.unload()


def _gap_after(renderer: Renderer, size: int, q: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """The gap between ``(image, mask)`` and a fresh render at rotation ``q``."""
    other, other_mask = renderer.render(q, size)
    return image_gap(image, other, mask, other_mask)


def _name_key(name: str) -> int:
    """A stable integer per mesh name, to seed its poses (Python's hash() is salted per process)."""
    return int.from_bytes(name.encode()[:16].ljust(16, b"\0"), "little") % (2**63)
