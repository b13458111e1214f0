"""Process-wide settings: seeding, the device, whether progress bars show."""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from audiocnn.core.errors import EnvironmentFailure

__all__ = ["pick_device", "seed_everything", "show_progress"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EnvironmentFailure(f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto "
                                 "or cpu")
    return device


def show_progress(setting: str = "auto") -> bool:
    """Progress bars only on a terminal unless forced."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    return sys.stderr.isatty() and not os.environ.get("CI")
