"""Where models run when nobody says: the GPU when there is one."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
