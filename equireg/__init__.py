"""equireg: invariant self-supervised learning with soft equivariance regularization."""

from __future__ import annotations

__version__ = "0.1.0"

from equireg.compat import ensure_torchvision_importable

# timm imports torchvision at import time; make that import work before anything pulls in timm.
ensure_torchvision_importable()
