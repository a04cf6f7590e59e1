"""Small meshes and rot3d sets for tests: symmetric solids the screen must skip, and an asymmetric wedge."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from equireg.data.rot3d.rotations import quaternions_to_matrices


def write_obj(folder: Path, name: str, vertices: np.ndarray, faces: list[tuple[int, ...]]) -> Path:
    """``folder/<name>/<name>.obj`` (the layout ``make_rot3d(mesh_dir=folder)`` reads)."""
    path = folder / name / f"{name}.obj"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x!r} {y!r} {z!r}" for x, y, z in vertices]
    lines += ["f " + " ".join(str(i + 1) for i in face) for face in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def box(a: float, b: float, c: float) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A box with half-sides a, b, c (quad faces, as many OBJ files have)."""
    v = np.array(list(itertools.product([-a, a], [-b, b], [-c, c])), dtype=float)
    return v, [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def cylinder(radius: float, half_height: float, sides: int = 32) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    v = np.concatenate([np.c_[ring, np.full(sides, half_height)], np.c_[ring, np.full(sides, -half_height)]])
    faces = [(i, (i + 1) % sides, sides + (i + 1) % sides, sides + i) for i in range(sides)]
    return v, faces + [tuple(range(sides))[::-1], tuple(range(sides, 2 * sides))]


def wedge() -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """An irregular pentahedron with no rotational symmetry."""
    v = np.array([[0, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 0.5], [1.2, 0.3, 0.9]], dtype=float)
    return v, [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 4), (2, 3, 4), (3, 1, 4)]


def placed(vertices: np.ndarray, seed: int) -> np.ndarray:
    """``vertices`` turned by a random rotation and moved off the origin, so no symmetry axis is a file axis."""
    q = np.random.default_rng(seed).standard_normal(4)
    return vertices @ quaternions_to_matrices(q / np.linalg.norm(q)).T + np.array([0.3, -0.2, 0.5])


def write_test_meshes(folder: Path) -> Path:
    """box, cube, cylinder (symmetric), bumpy (near-symmetric), needle (thin), nan (broken), wedge (passes)."""
    write_obj(folder, "box", placed(box(0.5, 1.0, 1.5)[0], 1), box(0.5, 1.0, 1.5)[1])
    write_obj(folder, "cube", *box(1.0, 1.0, 1.0))
    write_obj(folder, "cylinder", placed(cylinder(0.5, 1.2)[0], 2), cylinder(0.5, 1.2)[1])
    write_obj(folder, "needle", placed(box(1.0, 0.004, 0.006)[0], 3), box(1.0, 0.004, 0.006)[1])
    nan_v, nan_f = wedge()
    nan_v[2, 1] = np.nan
    write_obj(folder, "nan", nan_v, nan_f)
    write_obj(folder, "wedge", placed(wedge()[0], 4), wedge()[1])
    write_obj(folder, "bumpy", placed(box_with_bump()[0], 5), box_with_bump()[1])
    return folder


def box_with_bump(bump: float = 0.06) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A box with a small pyramid on one face: no exact symmetry, but a half-turn barely changes its image."""
    v, faces = box(0.5, 1.0, 1.5)
    base = np.array([[0.5, 0.1, 0.1], [0.5, -0.1, 0.1], [0.5, -0.1, -0.1], [0.5, 0.1, -0.1], [0.5 + bump, 0, 0]])
    base[:, 1:] += [0.5, 0.9]  # off the face centre, so no turn of the box keeps it
    v = np.concatenate([v, base])
    return v, faces + [(8, 9, 12), (9, 10, 12), (10, 11, 12), (11, 8, 12)]
