"""pybullet's CPU TinyRenderer in DIRECT mode (no GPU, no display): one fixed camera and light, white background.

World coordinates are the camera's: x right, y up, z towards the viewer (the camera sits at ``(0, 0, distance)``
looking at the origin with y up). An object in its unit-sphere frame (see :mod:`.mesh`) rotated by R sits at
``R @ p`` in these coordinates. The view angle keeps the unit sphere inside the frame with a margin.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from equireg.data.rot3d.mesh import MeshFrame
from equireg.data.rot3d.rotations import to_pybullet

INSTALL_HINT = "pip install 'equireg[rot3d]'"


class RendererUnavailableError(ImportError):
    """pybullet is not installed; the message names the extra that installs it."""


def import_pybullet() -> ModuleType:
    """``pybullet``, or an error that names the extra to install.

    Raises:
        RendererUnavailableError: pybullet is missing.
    """
    try:
        import pybullet_data  # noqa: F401  (the meshes; cheap, and fails the same way when missing)
    except ImportError:
        raise RendererUnavailableError(f"rot3d needs pybullet; install it with: {INSTALL_HINT}") from None
    with _quiet_stderr():
        import pybullet

    return pybullet


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send fd 2 to /dev/null: pybullet's C code writes a banner ("pybullet build time: ...") there on import."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera on the +z axis looking at the origin, and a directional light.

    ``fov_deg`` is the full vertical (= horizontal) view angle; with ``distance = 4`` and 34 degrees the unit
    sphere's outline (half-angle asin(1/4) = 14.5 degrees) fills at most 85% of the frame's half-width.
    """

    distance: float = 4.0
    fov_deg: float = 34.0
    near: float = 1.0
    far: float = 8.0
    light_direction: tuple[float, float, float] = (-1.0, 1.0, 2.0)
    ambient: float = 0.45
    diffuse: float = 0.55
    specular: float = 0.05
    eye: tuple[float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eye", (0.0, 0.0, self.distance))
        if math.asin(1.0 / self.distance) >= math.radians(self.fov_deg / 2):
            raise ValueError("the camera would not see the whole unit sphere; widen fov_deg or move it back")

    def view_matrix(self) -> NDArray[np.float64]:
        """4x4 world -> camera (row-major; identity rotation, the camera looks down -z)."""
        m = np.eye(4)
        m[2, 3] = -self.distance
        return m

    def projection_matrix(self) -> NDArray[np.float64]:
        """4x4 OpenGL perspective projection (row-major), square aspect."""
        f = 1.0 / math.tan(math.radians(self.fov_deg) / 2)
        n, fa = self.near, self.far
        return np.array([
            [f, 0, 0, 0],
            [0, f, 0, 0],
            [0, 0, (fa + n) / (n - fa), 2 * fa * n / (n - fa)],
            [0, 0, -1, 0],
        ], dtype=np.float64)  # fmt: skip

    def project(self, points: NDArray[np.float64], size: int) -> NDArray[np.float64]:
        """World points (N, 3) -> continuous pixel coordinates (N, 2) as (column, row), row 0 at the top."""
        homo = np.concatenate([np.asarray(points, dtype=np.float64), np.ones((len(points), 1))], axis=1)
        clip = homo @ (self.projection_matrix() @ self.view_matrix()).T
        ndc = clip[:, :2] / clip[:, 3:4]
        return np.stack([(ndc[:, 0] + 1) * size / 2, (1 - ndc[:, 1]) * size / 2], axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"eye": list(self.eye), "target": [0.0, 0.0, 0.0], "up": [0.0, 1.0, 0.0], "fov_deg": self.fov_deg,
                "near": self.near, "far": self.far, "light_direction": list(self.light_direction),
                "ambient": self.ambient, "diffuse": self.diffuse, "specular": self.specular}


def _gl(matrix: NDArray[np.float64]) -> list[float]:
    """Row-major 4x4 -> pybullet's column-major flat list."""
    return [float(v) for v in matrix.T.reshape(-1)]


class Renderer:
    """One pybullet DIRECT client holding at most one object at a time (clients are per process)."""

    def __init__(self, camera: Camera | None = None) -> None:
        self.pb = import_pybullet()
        self.camera = camera or Camera()
        self.client = self.pb.connect(self.pb.DIRECT)
        self._view = _gl(self.camera.view_matrix())
        self._proj = _gl(self.camera.projection_matrix())
        self.body: int | None = None

    def load(self, obj_path: str | Path, frame: MeshFrame, color: tuple[float, float, float]) -> None:
        """Replace the current object by the OBJ at ``obj_path``, centred and scaled by ``frame``."""
        self.unload()
        s = frame.scale
        shape = self.pb.createVisualShape(
            self.pb.GEOM_MESH, fileName=str(obj_path), meshScale=[s, s, s],
            visualFramePosition=[float(v) for v in -frame.centre * s], rgbaColor=[*color, 1.0],
            physicsClientId=self.client,
        )  # fmt: skip
        if shape < 0:
            raise ValueError(f"pybullet could not load {obj_path}")
        self.body = self.pb.createMultiBody(baseMass=0, baseVisualShapeIndex=shape, physicsClientId=self.client)

    def unload(self) -> None:
        if self.body is not None:
            self.pb.removeBody(self.body, physicsClientId=self.client)
            self.body = None

    def render(self, quaternion: NDArray[np.float64], size: int) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
        """RGB uint8 (size, size, 3) on white and the object's mask (size, size) at rotation ``quaternion``."""
        if self.body is None:
            raise RuntimeError("load an object before rendering")
        c = self.camera
        self.pb.resetBasePositionAndOrientation(self.body, [0, 0, 0], to_pybullet(quaternion),
                                                physicsClientId=self.client)
        _, _, rgba, _, seg = self.pb.getCameraImage(
            size, size, self._view, self._proj, lightDirection=list(c.light_direction), shadow=0,
            lightAmbientCoeff=c.ambient, lightDiffuseCoeff=c.diffuse, lightSpecularCoeff=c.specular,
            renderer=self.pb.ER_TINY_RENDERER, physicsClientId=self.client,
        )  # fmt: skip
        mask = np.asarray(seg).reshape(size, size) >= 0
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()
        rgb[~mask] = 255
        return rgb, mask

    def close(self) -> None:
        try:
            self.pb.disconnect(self.client)
        except Exception:  # noqa: BLE001 - already gone at interpreter exit
            pass
