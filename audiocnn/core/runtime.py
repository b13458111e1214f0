"""Process-wide settings: seeding, the device, whether progress bars show."""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from audiocnn.core.errors import ConfigError, EnvironmentFailure

__all__ = ["parse_device", "pick_device", "seed_everything", "show_progress"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def parse_device(name: str | torch.device) -> torch.device:
    """A device name as torch spells it (``cpu``, ``cuda:1``, ``mps``), checked; not whether the machine has it.

    Raises:
        ConfigError: a name torch does not know (``gpu0``), listing the valid forms.
    """
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r} (trainer.device, --device) is not a device name; use auto, cpu, cuda, "
                          "cuda:N or mps") from None


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or ``None``) picks CUDA, then Apple MPS, then CPU; anything else is checked and passed to
    ``torch.device``.

    Raises:
        ConfigError: a name torch does not know (``gpu0``; the message lists the valid forms).
        EnvironmentFailure: a device this machine does not have (``cuda`` on a CPU build, ``cuda:3`` of 2 GPUs).
    """
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = parse_device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EnvironmentFailure(f"device {name!r} (trainer.device, --device): CUDA is not available here "
                                     f"(torch {torch.__version__}); use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EnvironmentFailure(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s); "
                                     "use cuda:0 ... or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise EnvironmentFailure(f"device {name!r} (trainer.device, --device): MPS is not available here; use auto or cpu")
    return device


def show_progress(setting: str = "auto") -> bool:
    """Progress bars only on a terminal unless forced."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    return sys.stderr.isatty() and not os.environ.get("CI")
