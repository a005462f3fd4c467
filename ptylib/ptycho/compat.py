"""Import pty-chi on a CPU-only torch: the registry's torchvision wheel is a CUDA build (see STACK.md).

Its compiled ops need libtorch_cuda, so ``import torchvision`` fails with ``operator torchvision::nms
does not exist``. Defining the two missing op schemas and importing again makes the pure-Python parts
work; pty-chi only needs ``torchvision.transforms.GaussianBlur``.
"""

from __future__ import annotations

import sys
from types import ModuleType

_MISSING_OPS = ("nms", "qnms")
_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def ensure_torchvision() -> ModuleType:
    """Import torchvision, applying the op-schema workaround when its compiled ops cannot load."""
    import torch

    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        for op in _MISSING_OPS:
            try:
                torch.library.define(f"torchvision::{op}", _NMS_SCHEMA)
            except RuntimeError:  # already defined by an earlier, partly successful import
                pass
        import torchvision
    return torchvision


def import_ptychi_api() -> ModuleType:
    """``ptychi.api``, importable on a CPU-only torch."""
    ensure_torchvision()
    from ptychi import api

    return api
