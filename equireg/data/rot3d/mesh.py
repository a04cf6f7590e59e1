"""Meshes for rot3d: reading OBJ files, and the frame each object is rendered in.

The frame is the mesh's area-weighted surface centroid (kept by every rotational symmetry of the surface, so a
symmetry axis passes through it and the symmetry screen's turns need no translation) plus the radius of the
smallest sphere about that point holding every vertex; scaling by ``1 / radius`` puts every object in the unit
sphere, which the camera keeps in frame under every rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Mesh:
    """Triangle mesh: vertices (V, 3) float64 and faces (F, 3) int64 vertex indices."""

    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]


@dataclass(frozen=True)
class MeshFrame:
    """Where to centre a mesh, how much to scale it (to radius 1) and its principal axes (columns)."""

    centre: NDArray[np.float64]
    radius: float
    axes: NDArray[np.float64]

    @property
    def scale(self) -> float:
        return 1.0 / self.radius

    def normalise(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Object coordinates -> the centred unit-sphere coordinates that rotations act on."""
        return (np.asarray(points, dtype=np.float64) - self.centre) * self.scale


class BrokenMeshError(ValueError):
    """The OBJ cannot be used: unreadable, empty, non-finite or degenerate."""


def read_obj(path: str | Path) -> Mesh:
    """Vertices and triangles of a Wavefront OBJ (polygons fanned into triangles; texture/normal indices dropped).

    Raises:
        BrokenMeshError: no vertices or faces, a face index out of range, or a line that does not parse.
    """
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("v "):
                    vertices.append([float(v) for v in line.split()[1:4]])
                elif line.startswith("f "):
                    idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                    idx = [i - 1 if i > 0 else len(vertices) + i for i in idx]  # OBJ is 1-based; negatives count back
                    faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    except (OSError, ValueError, IndexError) as exc:
        raise BrokenMeshError(f"cannot read {path}: {exc}") from None
    if not vertices or not faces:
        raise BrokenMeshError(f"{path} has {len(vertices)} vertices and {len(faces)} faces")
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.shape[1] != 3 or f.min() < 0 or f.max() >= len(v):
        raise BrokenMeshError(f"{path} has malformed vertices or a face index out of range")
    return Mesh(v, f)


def mesh_frame(mesh: Mesh) -> MeshFrame:
    """The rendering frame of ``mesh`` (see the module docstring).

    Raises:
        BrokenMeshError: non-finite vertices or a surface of (near) zero area.
    """
    if not np.isfinite(mesh.vertices).all():
        raise BrokenMeshError("non-finite (NaN or inf) vertex coordinates")
    tri = mesh.vertices[mesh.faces]  # (F, 3 corners, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = area.sum()
    extent = float(np.ptp(mesh.vertices, axis=0).max())
    if not total > 1e-12 * max(extent, 1e-300) ** 2:
        raise BrokenMeshError("the surface has zero area")
    weights = area / total
    centroids = tri.mean(axis=1)
    centre = weights @ centroids
    radius = float(np.linalg.norm(mesh.vertices - centre, axis=1).max())
    # Exact second moment of the surface about the centre (uniform density on each triangle:
    # integral of x x^T over a triangle = area / 12 * (sum of v v^T over corners + s s^T), s = sum of corners).
    # Every symmetry axis of the surface is one of its eigenvectors.
    rel = tri - centre
    corner_sum = rel.sum(axis=1)
    per_tri = np.einsum("fci,fcj->fij", rel, rel) + np.einsum("fi,fj->fij", corner_sum, corner_sum)
    moment = np.einsum("f,fij->ij", weights / 12.0, per_tri)
    _, axes = np.linalg.eigh(moment)
    return MeshFrame(centre=centre, radius=radius, axes=axes)
