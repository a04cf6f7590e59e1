"""Environment compatibility shims, kept in one small place.

PyPI's torchvision wheels are CUDA builds. Next to a CPU-only torch their compiled ops cannot load and
``import torchvision`` fails with ``RuntimeError: operator torchvision::nms does not exist`` (its meta
registrations assume the ops exist). timm imports torchvision at import time, so that failure would take
timm down with it. Defining the two op schemas first makes the pure-Python parts of torchvision (transforms,
``FrozenBatchNorm2d``) importable; only the C++ detection ops stay unavailable, and equireg does not use them.
"""

from __future__ import annotations

import sys

import torch

_TORCHVISION_OPS = ("nms", "qnms")
_library_keepalive: list[torch.library.Library] = []


def _drop_partial_torchvision_modules() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` succeed; return False only when torchvision is not installed."""
    try:
        import torchvision  # noqa: F401

        return True
    except ImportError:
        return False
    except RuntimeError:
        _drop_partial_torchvision_modules()
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in _TORCHVISION_OPS:
        try:
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already defined (a working build, or a second call)
            pass
    _library_keepalive.append(lib)
    import torchvision  # noqa: F401

    return True
