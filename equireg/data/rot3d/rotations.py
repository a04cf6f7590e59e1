"""Rotations for rot3d in numpy (float64): uniform sampling on SO(3), quaternions and matrices.

Conventions: quaternions are Hamilton, stored ``(w, x, y, z)`` with ``w >= 0`` (q and -q are the same rotation,
so one sign is fixed to make labels unique); matrices act on column vectors, ``p_camera = R @ p_object``.
pybullet orders quaternions ``(x, y, z, w)``: :func:`to_pybullet` converts.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def canonical_quaternions(q: Array) -> Array:
    """Unit quaternions with the sign fixed: ``w > 0``, or for ``w == 0`` the first non-zero entry positive."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    first_nonzero = np.argmax(np.abs(q) > 1e-12, axis=-1)
    lead = np.take_along_axis(q, first_nonzero[..., None], axis=-1)
    return np.where(lead < 0, -q, q)


def random_quaternions(n: int, rng: np.random.Generator) -> Array:
    """``n`` rotations uniform on SO(3) (Haar measure): normalised Gaussian 4-vectors are uniform on S^3."""
    return canonical_quaternions(rng.standard_normal((n, 4)))


def quaternions_to_matrices(q: Array) -> Array:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def multiply_quaternions(a: Array, b: Array) -> Array:
    """Hamilton product ``a * b`` (the rotation ``b`` first, then ``a``), canonical sign."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    out = np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)  # fmt: skip
    return canonical_quaternions(out)


def axis_angle_quaternion(axis: Array, angle: float) -> Array:
    """The quaternion of a turn by ``angle`` radians about ``axis`` (normalised here)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    return canonical_quaternions(np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis]))


def to_pybullet(q: Array) -> list[float]:
    """One quaternion (w, x, y, z) -> pybullet's (x, y, z, w) list."""
    w, x, y, z = (float(v) for v in q)
    return [x, y, z, w]
