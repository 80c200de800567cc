"""Keep Triton out of a napari process that has no CUDA device.

torchvision (imported by pytorch-grad-cam and zennit) imports torch._dynamo, which imports Triton
if it is installed. Triton's native library carries its own LLVM; loaded into a process where Qt
already runs OpenGL through Mesa's llvmpipe (software rendering: Xvfb, remote desktops, VMs
without a GPU), the two LLVMs clash and the process dies with a segmentation fault. Triton only
serves torch.compile on a GPU, which the plugin never uses, so in a Qt process (napari, its
console) on a machine without CUDA it is marked as absent before anything imports it (``import
triton`` then raises ImportError, which torch handles). Plain Python sessions are left alone; so
is everything when CERVSEG_ALLOW_TRITON=1.
"""

from __future__ import annotations

import os
import sys

QT_MODULES = ("PyQt6", "PyQt5", "PySide6", "PySide2")


def keep_triton_out() -> bool:
    """Mark Triton absent in a Qt process unless it is already imported, CUDA is available, or the
    user opted out. Returns whether it was marked."""
    if "triton" in sys.modules or os.environ.get("CERVSEG_ALLOW_TRITON"):
        return False
    if not any(name in sys.modules for name in QT_MODULES):
        return False
    import torch

    if torch.cuda.is_available():
        return False
    sys.modules["triton"] = None
    return True


keep_triton_out()
