"""rot3d: an offline 3D-rotation benchmark rendered on the CPU, with exact rotation labels.

``make_rot3d(out)`` (or ``equireg data make rot3d --out DIR``) renders the procedural objects that ship with
pybullet (``pybullet_data/random_urdfs``) at uniform random rotations; the dataset ``rot3d`` reads the result.
Nothing here imports pybullet until something is rendered, so the package imports without the extra.
See docs/rot3d.md.
"""

from equireg.data.rot3d.dataset import Rot3dLabels, load_labels, rot3d, rot3d_root
from equireg.data.rot3d.make import NotEnoughObjectsError, Rot3dOptions, Rot3dSummary, make_rot3d
from equireg.data.rot3d.render import Camera, Renderer, RendererUnavailableError
from equireg.data.rot3d.screen import ScreenConfig, ScreenResult, screen_mesh

__all__ = [
    "Camera",
    "NotEnoughObjectsError",
    "Renderer",
    "RendererUnavailableError",
    "Rot3dLabels",
    "Rot3dOptions",
    "Rot3dSummary",
    "ScreenConfig",
    "ScreenResult",
    "load_labels",
    "make_rot3d",
    "rot3d",
    "rot3d_root",
    "screen_mesh",
]
